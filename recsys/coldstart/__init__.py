"""Cold-start evaluation: meta-learned adapters against the un-adapted ranker, fine-tuning and
warm users, at every support size K, on the same new users and query rows.

    protocol   which users and rows; adapting and scoring one user at a time (timed)
    stats      metrics as per-user statistics; the paired user-level bootstrap
    harness    evaluate_methods / run_coldstart: the whole evaluation as a report dict
    report     coldstart.json, coldstart.md, curve.png, curve.json
    commands   ``recsys coldstart evaluate``

Importing this package is light (the CLI registers the command without torch); the functions
below load their modules on first use.

Example:
    >>> from recsys.coldstart import run_coldstart                      # doctest: +SKIP
    >>> report = run_coldstart("runs/esmm", methods=["finetune", "maml"], shots=[0, 5])  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from recsys.coldstart.commands import add_commands

_LAZY = {
    "evaluate_methods": "harness", "run_coldstart": "harness", "score_methods": "harness", "summarise": "harness",
    "warm_reference": "harness", "paired_bootstrap": "stats", "user_stats": "stats", "metric_values": "stats",
    "load_run": "protocol", "cold_start_split": "protocol", "fixed_queries": "protocol",
    "write_report": "report", "format_markdown": "report", "curve_data": "report", "plot_curves": "report",
}

__all__ = ["add_commands", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"recsys.coldstart.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'recsys.coldstart' has no attribute {name!r}")
