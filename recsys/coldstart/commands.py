"""The ``recsys coldstart`` sub-command: ``evaluate``.

Registering the parser imports nothing heavy; the handler imports torch, polars and matplotlib
when it runs. A user mistake raises a `recsys.errors.RecsysError`, which the CLI prints as one
line with exit code 2.

    recsys coldstart evaluate --run runs/esmm --methods none,finetune,maml,anil,proto \\
        --shots 0,1,3,5,10,20 --bootstrap 1000 [--dataset ml-100k] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_METHODS = "none,finetune,maml,fomaml,anil,metasgd,proto,blackbox"
DEFAULT_SHOTS = "0,1,3,5,10,20"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``coldstart evaluate`` on the CLI's sub-parsers."""
    cs = subparsers.add_parser("coldstart", help="meta-learned cold start: evaluate adapters on new users")
    csub = cs.add_subparsers(dest="coldstart_command", metavar="ACTION")
    cs.set_defaults(func=lambda args: cs.print_help() or 2)

    ev = csub.add_parser(
        "evaluate",
        help="every adapter at every support size K on the same new users, against none, finetune and warm "
             "users, with paired bootstrap intervals; writes coldstart.json/.md, curve.png/.json")
    ev.add_argument("--run", type=Path, required=True, help="a run directory written by `recsys train`")
    ev.add_argument("--dataset", help="the run's prepared data set (a name or a path); checked against the run")
    ev.add_argument("--methods", default="all",
                    help=f"comma-separated adapters, e.g. {DEFAULT_METHODS}, or 'all' (every registered one); "
                         "none is always included (default: %(default)s)")
    ev.add_argument("--shots", default=DEFAULT_SHOTS, help="comma-separated support sizes K (default: %(default)s)")
    ev.add_argument("--seed", type=int, default=0,
                    help="seed of the validation/test split of new users and of the bootstrap (default: 0)")
    ev.add_argument("--bootstrap", type=int, default=1000,
                    help="user resamples of the paired bootstrap; 0 = no intervals (default: %(default)s)")
    ev.add_argument("--out", type=Path, help="output directory (default: RUN/coldstart)")
    ev.add_argument("--reuse-fitted", action="store_true",
                    help="load adapters saved in OUT/adapters by an earlier run (same ranker, seed, options) "
                         "instead of fitting them again")
    ev.add_argument("--no-oracle", action="store_true",
                    help="skip the same-user oracle (the ranker trained again with the measured users' first "
                         "max(shots) events: one more training run); the gap closed is then measured against "
                         "the warm users")
    ev.add_argument("--json", action="store_true", help="print coldstart.json instead of the tables")
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                    help="where the ranker and adapters run (default: %(default)s; adaptation timings are "
                         "per user, so a GPU pays off for meta-training, not for one user's few rows)")
    ev.add_argument("--data-dir", default=os.environ.get("RECSYS_DATA_DIR", "data"),
                    help="cache root to resolve --dataset by name (default: %(default)s, or $RECSYS_DATA_DIR)")
    ev.set_defaults(func=_cmd_evaluate)


def parse_shots(text: str) -> list[int]:
    """``"0,1,5"`` → [0, 1, 5]; anything but integers >= 0 is a `ConfigError` naming the value."""
    from recsys.errors import ConfigError

    shots = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            k = int(part)
        except ValueError:
            raise ConfigError(f"--shots: {part!r} is not an integer; give e.g. --shots 0,1,3,5") from None
        if k < 0:
            raise ConfigError(f"--shots: {k} is negative; support sizes K must be >= 0")
        shots.append(k)
    if not shots:
        raise ConfigError(f"--shots {text!r} names no support size; give e.g. --shots 0,1,3,5")
    return shots


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cmd_evaluate(args) -> int:
    from recsys.coldstart.harness import run_coldstart
    from recsys.coldstart.report import format_markdown

    out = args.out or args.run / "coldstart"
    methods = args.methods.split(",")
    if methods == ["all"]:
        from recsys.meta.registry import ADAPTERS

        methods = list(ADAPTERS)
    report = run_coldstart(args.run, dataset=args.dataset, data_dir=args.data_dir, methods=methods,
                           shots=parse_shots(args.shots), seed=args.seed, n_boot=args.bootstrap, out=out,
                           reuse=args.reuse_fitted, oracle=not args.no_oracle, device=args.device, log=_log)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_markdown(report))
        _log(f"coldstart: wrote {out}/coldstart.json, coldstart.md, curve.png, curve.json")
    return 0
