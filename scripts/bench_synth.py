"""Benchmark the YouTube-like simulator: wall time and peak memory of `simulate()`.

Peak memory is the process's peak resident set size (``resource.getrusage``), which
includes the interpreter and imports; it is measured after the imports so the figure is
what generation adds on top of them as well as the total.

Usage:
    python scripts/bench_synth.py                       # 10M impressions, 100k users, 100k videos
    python scripts/bench_synth.py --impressions 1000000 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import polars as pl

from recsys.data.sources.synthetic import SimConfig, simulate
from recsys.errors import ConfigError


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--slate-size", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    try:
        config = SimConfig(users=args.users, items=args.items, impressions=args.impressions,
                           slate_size=args.slate_size, seed=args.seed)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    baseline_mb = peak_rss_mb()
    start = time.perf_counter()
    world = simulate(config)
    seconds = time.perf_counter() - start
    peak_mb = peak_rss_mb()

    imp = world.impressions
    clicks = imp.filter(pl.col("click") == 1)
    by_bait = imp.join(world.items.select("item_id", "is_clickbait"), on="item_id")
    by_bait = by_bait.group_by("is_clickbait").agg(
        ctr=pl.col("click").mean(), like_given_click=pl.col("like").filter(pl.col("click") == 1).mean())
    bait = {row["is_clickbait"]: row for row in by_bait.iter_rows(named=True)}
    result = {
        "impressions": imp.height,
        "users": config.users,
        "items": config.items,
        "seconds": round(seconds, 3),
        "impressions_per_s": round(imp.height / seconds),
        "peak_rss_mb": round(peak_mb, 1),
        "rss_before_mb": round(baseline_mb, 1),
        "frame_mb": round(imp.estimated_size("mb"), 1),
        "ctr": round(float(imp["click"].mean()), 4),
        "like_given_click": round(float(clicks["like"].mean()), 4) if clicks.height else None,
    }
    if not args.json:
        rows = [
            ("impressions", f"{result['impressions']:,}"),
            ("users / videos", f"{config.users:,} / {config.items:,}"),
            ("wall time", f"{seconds:.2f} s"),
            ("impressions / s", f"{result['impressions_per_s']:,}"),
            ("peak RSS", f"{peak_mb:,.0f} MiB (before simulate: {baseline_mb:,.0f} MiB)"),
            ("impressions frame", f"{result['frame_mb']:,.0f} MB"),
            ("CTR", f"{result['ctr']:.4f}"),
            ("like | click", f"{result['like_given_click']}"),
        ]
        for flag, name in ((False, "non-clickbait"), (True, "clickbait")):
            if flag in bait:
                rows.append((f"{name} CTR / like|click",
                             f"{bait[flag]['ctr']:.4f} / {bait[flag]['like_given_click'] or 0:.4f}"))
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"{key:<{width}}  {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
