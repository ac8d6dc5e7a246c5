"""Data preparation throughput: MovieLens-100k framing and the simulator, rows per second and memory.

Each case runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own:

- ``ml-100k``: `recsys.data.prepare.prepare_movielens` on the cached raw files (watch-next
  framing, 4 hashed negatives per positive, cold-start users, temporal split, vocabularies,
  parquet written atomically). Fetching is not timed (the cache must exist: `recsys data
  fetch ml-100k`).
- ``synth-N``: `recsys.data.sources.synthetic.simulate` (timed alone) then `prepare_synthetic`
  (split, encode, write) for N impressions (``--impressions``, default 1M and 10M).

Rates are output rows per wall second (preparation is single-process polars/numpy work; polars
uses its own thread pool, ``--polars-threads`` bounds it).

Usage:
    python scripts/bench_prepare.py                            # ml-100k, synth 1M and 10M
    python scripts/bench_prepare.py --impressions 1000000 --skip-ml
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import emit, machine, table  # noqa: E402

_CHILD = r"""
import json, sys, time
sys.path.insert(0, {scripts!r})
from _bench import peak_rss_mb
case, out, data_dir, n = {case!r}, {out!r}, {data_dir!r}, {n!r}
base = peak_rss_mb()
if case == "ml-100k":
    from recsys.data.prepare import PrepareConfig, prepare_movielens
    from recsys.data.sources.movielens import fetch
    ml = fetch("ml-100k", data_dir, source="auto", log=lambda m: None)  # the verified cache (checked by main)
    t0 = time.perf_counter()
    summary = prepare_movielens(ml, out, PrepareConfig())
    prep = time.perf_counter() - t0
    sim = 0.0
    inputs = ml.ratings.height
else:
    from recsys.data.prepare import prepare_synthetic
    from recsys.data.sources.synthetic import SimConfig, simulate
    t0 = time.perf_counter()
    world = simulate(SimConfig(users=100_000, items=100_000, impressions=n, seed=0))
    sim = time.perf_counter() - t0
    inputs = world.impressions.height
    t0 = time.perf_counter()
    summary = prepare_synthetic(world, out)
    prep = time.perf_counter() - t0
rows = sum(s["rows"] for s in summary["splits"].values())
print(json.dumps({{"case": case, "inputs": inputs, "rows": rows, "simulate_s": sim, "prepare_s": prep,
                  "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": base}}))
"""


def run_case(case: str, data_dir: str, n: int, polars_threads: int | None) -> dict:
    scripts = str(Path(__file__).resolve().parent)
    env = dict(os.environ)
    if polars_threads:
        env["POLARS_MAX_THREADS"] = str(polars_threads)
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        code = _CHILD.format(scripts=scripts, case=case, out=str(Path(tmp) / "prepared"), data_dir=data_dir, n=n)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"error: case {case} failed:\n{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("RECSYS_DATA_DIR", "data"),
                   help="cache root holding data/raw/ml-100k (default: %(default)s)")
    p.add_argument("--impressions", type=int, nargs="*", default=[1_000_000, 10_000_000],
                   help="simulator sizes to prepare (default: 1M and 10M)")
    p.add_argument("--skip-ml", action="store_true", help="leave out MovieLens-100k")
    p.add_argument("--polars-threads", type=int, default=None, help="POLARS_MAX_THREADS of the children")
    p.add_argument("--out", default="runs/bench/prepare.json")
    p.add_argument("--json", action="store_true", help="print only the JSON")
    args = p.parse_args(argv)
    if not args.skip_ml and not (Path(args.data_dir) / "raw" / "ml-100k" / "manifest.json").exists():
        print(f"error: no cached ml-100k under {args.data_dir}/raw; run `recsys data fetch ml-100k` first "
              "(or pass --skip-ml)", file=sys.stderr)
        return 2
    cases = ([] if args.skip_ml else [("ml-100k", 0)]) + [(f"synth-{n:,}", n) for n in args.impressions]
    results = []
    for name, n in cases:
        r = run_case("ml-100k" if n == 0 else "synth", args.data_dir, n, args.polars_threads)
        r["case"] = name
        r["rows_per_s"] = r["rows"] / r["prepare_s"] if r["prepare_s"] else None
        r["simulate_per_s"] = r["inputs"] / r["simulate_s"] if r["simulate_s"] else None
        results.append(r)
    report = {"benchmark": "prepare", "results": results, "machine": machine()}
    text = table([(r["case"], f"{r['inputs']:,}", f"{r['rows']:,}",
                   f"{r['simulate_s']:.1f}" if r["simulate_s"] else "-", f"{r['prepare_s']:.1f}",
                   f"{r['rows_per_s']:,.0f}", f"{r['peak_rss_mb']:,.0f}") for r in results],
                 ("case", "input rows", "output rows", "simulate s", "prepare s", "rows/s", "peak RSS MiB"))
    emit(report, "data preparation throughput (one subprocess per case)\n" + text, args.out, json_only=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
