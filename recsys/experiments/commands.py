"""The ``recsys experiment`` sub-command: ``grid`` and ``affinity``.

Registering the parser imports nothing heavy; the handlers import torch, polars and matplotlib
when they run. A user mistake raises a `recsys.errors.RecsysError`, which the CLI prints as one
line with exit code 2.

    recsys experiment grid --dataset ml-100k --models mmoe,ple --weightings equal,pcgrad \\
        --seeds 0,1,2 --static-sweep 0.1,0.5,0.9 --epochs 3 --out experiments/grid
    recsys experiment affinity --dataset ml-100k --tasks click,like,rating --model mmoe \\
        --seeds 0,1 --out experiments/affinity
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ALL_WEIGHTINGS = "equal,uncertainty,gradnorm,dwa,pcgrad,mgda,cagrad"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``experiment grid`` and ``experiment affinity`` on the CLI's sub-parsers."""
    exp = subparsers.add_parser("experiment", help="multi-task experiments: weighting grid, task affinity")
    esub = exp.add_subparsers(dest="experiment_command", metavar="ACTION")
    exp.set_defaults(func=lambda args: exp.print_help() or 2)

    grid = esub.add_parser("grid", help="every model × weighting × seed against a static-weight sweep; "
                                        "table, Pareto plot, diagnostics (resumable)")
    grid.add_argument("--models", default="mmoe,ple,shared_bottom", help="comma-separated (default: %(default)s)")
    grid.add_argument("--weightings", default=ALL_WEIGHTINGS, help="comma-separated (default: %(default)s)")
    grid.add_argument("--static-sweep", default="0.1,0.3,0.5,0.7,0.9",
                      help="click weights a of the static baseline (like gets 1 - a), or 'none' "
                           "(default: %(default)s)")
    grid.add_argument("--sweep-rest-weight", type=float, default=1.0,
                      help="static weight of the other tasks (rating) in the sweep (default: %(default)s)")
    _common(grid)
    grid.set_defaults(func=_cmd_grid)

    aff = esub.add_parser("affinity", help="train each task alone, in pairs and all together; "
                                           "which tasks help which (resumable)")
    aff.add_argument("--tasks", default="click,like,rating", help="comma-separated (default: %(default)s)")
    aff.add_argument("--model", default="mmoe", help="architecture (default: %(default)s)")
    aff.add_argument("--weighting", default="equal", help="weighting of the multi-task runs (default: %(default)s)")
    _common(aff)
    aff.set_defaults(func=_cmd_affinity)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="ml-100k", help="prepared data set: a name or a path (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated (default: %(default)s)")
    p.add_argument("--preset", default="default", help="smoke | default (default: %(default)s)")
    p.add_argument("--epochs", type=int, help="epochs of every run (default: the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key for every run, JSON values allowed, e.g. --set threads=1")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="experiment directory (re-run to continue)")
    p.add_argument("--data-dir", default=os.environ.get("RECSYS_DATA_DIR", "data"),
                   help="cache root for prepared data (default: %(default)s, or $RECSYS_DATA_DIR)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _overrides(args) -> dict:
    from recsys.config import parse_set
    from recsys.errors import ConfigError

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    over = parse_set(args.set)
    if args.epochs is not None:
        over["epochs"] = args.epochs
    return over


def _cmd_grid(args) -> int:
    from recsys.experiments.grid import run_grid

    report = run_grid(args.dataset, args.models, args.weightings, args.seeds, args.static_sweep, out=args.out,
                      preset=args.preset, overrides=_overrides(args), sweep_rest_weight=args.sweep_rest_weight,
                      data_dir=args.data_dir, jobs=args.jobs, log=_log)
    print((args.out / "grid.md").read_text())
    print(f"{len(report['runs'])} runs; wrote {args.out}/grid.json, grid.md, pareto.png, pareto.json")
    return 0


def _cmd_affinity(args) -> int:
    from recsys.experiments.affinity import run_affinity

    report = run_affinity(args.dataset, args.tasks, args.model, args.seeds, out=args.out, weighting=args.weighting,
                          preset=args.preset, overrides=_overrides(args), data_dir=args.data_dir, jobs=args.jobs,
                          log=_log)
    print((args.out / "affinity.md").read_text())
    print(f"{len(report['runs'])} runs; wrote {args.out}/affinity.json, affinity.md, affinity.png")
    return 0
