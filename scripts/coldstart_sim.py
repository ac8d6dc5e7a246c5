"""Cold start on the simulator, where each user's true taste is known (issue #4's second half).

MovieLens-100k says how adapters learn a new user's *level*; the simulator says whether they learn
their *taste*: every like there comes from ``sigmoid(B0 + B1 * interest[u, topic] + B2 * quality)``
with a per-user interest over topics, half of it individual (not in the user's features), so
only the user's own events reveal it.

The world is sized for the protocol: the default simulator (2,000 users, 200,000 impressions)
gives a new user a median of 7 slates, so only ~35 test users have an event after K = 20 and
the per-user figures are noise. Here 3,000 users and 2,000,000 impressions give ~67 slates per
user on average: 600 new users, of whom 400 are test users and ~325 have query events after their
first 20.

Steps (each skipped when its output is already in ``--work`` for the same settings):

1. ``recsys data synth --users 3000 --items 1000 --impressions 2000000 --seed S``;
2. the main job's ranker on it (MMoE + uncertainty weighting + ESMM, one thread, 6 epochs,
   early-stopped on validation);
3. ``recsys coldstart evaluate`` with ``--methods`` (fine-tuning tuned on its full grid), the
   warm users and the same-user oracle as references;
4. `coldstart_goals.py`'s verdicts, judged with the taste goal.

About 25 minutes on 2 cores (the ranker 3.5, fine-tuning's grid 8, the black-box adapters 8,
the oracle 3.5).

Usage:
    python scripts/coldstart_sim.py [--seed 0] [--work runs/coldstart_sim]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

METHODS = "none,finetune,anil,proto,blackbox,blackbox_maml"


def log(msg: str) -> None:
    if " step " not in msg:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from coldstart_goals import check, print_rows

    from recsys.coldstart.harness import run_coldstart
    from recsys.config import load_config
    from recsys.data.prepare import prepare_synthetic
    from recsys.data.sources.synthetic import SimConfig, simulate
    from recsys.pipeline import DEFAULT_ADAPTER, MAIN_RANKER
    from recsys.train import train

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="the world's seed (and the split's and the ranker's)")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--impressions", type=int, default=2_000_000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--work", type=Path, default=Path("runs/coldstart_sim"))
    args = ap.parse_args(argv)

    work = args.work / f"seed{args.seed}"
    data, ranker, out = work / "data", work / "ranker", work / "coldstart"
    config = SimConfig(users=args.users, items=args.items, impressions=args.impressions, seed=args.seed)
    wanted = {"users": args.users, "items": args.items, "impressions": args.impressions, "seed": args.seed}
    summary = json.loads((data / "summary.json").read_text()) if (data / "summary.json").exists() else {}
    made = summary.get("protocol", {}).get("simulator", {})
    if any(made.get(k) != v for k, v in wanted.items()):
        log(f"world: simulating {args.impressions:,} impressions ({args.users:,} users, {args.items:,} items)")
        prepare_synthetic(simulate(config), data)
    else:
        log(f"world: reusing {data}")
    if not (ranker / "manifest.json").exists():
        log("ranker: training " + ", ".join(f"{k}={v}" for k, v in MAIN_RANKER.items() if k != "epochs")
            + f", epochs={args.epochs}")
        train(load_config("default", {**MAIN_RANKER, "epochs": args.epochs, "dataset": str(data.resolve()),
                                      "seed": args.seed, "threads": 1, "device": "cpu"}),
              ranker, resume=(ranker / "checkpoint.pt").exists(), log=log)
    else:
        log(f"ranker: reusing {ranker}")
    report = run_coldstart(ranker, methods=args.methods.split(","), seed=args.seed, out=out, reuse=True, log=log)
    rows = check(report, DEFAULT_ADAPTER, taste=True)
    print_rows(out / "coldstart.json", DEFAULT_ADAPTER, report, rows)
    return 1 if any(r["pass"] is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
