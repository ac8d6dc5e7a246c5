"""Issue #4's goals, checked against cold-start reports (``coldstart.json`` of `recsys coldstart
evaluate` or of the main job's ``eval/coldstart``).

For each report, with the adapter named by ``--adapter`` (default: the one serving uses,
`recsys.pipeline.DEFAULT_ADAPTER`, named before any result is seen, so its comparisons are tests,
not the highlight of a table; the report's best meta-learner is printed beside it):

- K = 3 and 5: the adapter beats tuned ``finetune`` on like AUC, paired 95% interval above 0;
- K = 5: it closes at least half of the gap between ``none`` and the reference on like AUC
  (the same-user oracle when the report has one, else the warm users);
- K = 20 (simulator reports, ``--taste``): per-user like AUC at least 0.02 above ``none``,
  interval above 0; on MovieLens the same figure is printed, not judged;
- K = 1: no adapter is worse than ``none`` on like AUC beyond noise (interval wholly below 0);
- every adapter adapts one user in under 50 ms at p99 for every K <= 20.

Usage:
    python scripts/coldstart_goals.py runs/main/eval/coldstart/coldstart.json \\
        --taste runs/synthcs_coldstart/coldstart.json [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BEAT_SHOTS, GAP_K, GAP_SHARE, TASTE_K, TASTE_GAIN, P99_MS = (3, 5), 5, 0.5, 20, 0.02, 50.0


def check(report: dict[str, Any], adapter: str, *, taste: bool) -> list[dict[str, Any]]:
    """The goal rows of one report: name, value, verdict (True / False / None = reported only)."""
    rows: list[dict[str, Any]] = []

    def row(goal: str, value: str, ok: bool | None) -> None:
        rows.append({"goal": goal, "value": value, "pass": ok})

    def diff(pair: str, k: int, metric: str) -> dict[str, Any] | None:
        return (report.get("paired", {}).get(pair, {}).get(str(k)) or {}).get(metric)

    if adapter not in report["methods"]:
        raise SystemExit(f"coldstart_goals: {adapter!r} is not in this report (methods: {report['methods']})")
    for k in BEAT_SHOTS:
        d = diff(f"{adapter} - finetune", k, "like_auc")
        ok = d is not None and d["lo"] is not None and d["lo"] > 0
        row(f"K={k}: {adapter} − finetune, like AUC",
            "–" if d is None else f"{d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]", ok)
    gap = (report.get("gap_closed", {}).get("like_auc", {}).get(adapter) or {}).get(str(GAP_K))
    ci = (report.get("gap_intervals", {}).get("like_auc", {}).get(adapter) or {}).get(str(GAP_K))
    ref = report.get("gap_reference", "warm")
    row(f"K={GAP_K}: share of the none → {ref} gap closed, like AUC (≥ {GAP_SHARE})",
        "undefined" if gap is None else f"{gap:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""),
        gap is not None and gap >= GAP_SHARE)
    warm, none = (report.get("warm") or {}).get("like_auc"), report["results"]["none"][str(GAP_K)].get("like_auc")
    if ref != "warm" and warm is not None and none is not None:
        mine = report["results"][adapter][str(GAP_K)].get("like_auc")
        row(f"K={GAP_K}: the same share against the warm users (other users)",
            f"{(mine - none) / (warm - none):.2f}" if warm > none else f"undefined (warm {warm:.4f} <= none {none:.4f})",
            None)
    d = diff(f"{adapter} - none", TASTE_K, "like_user_auc")
    ok = d is not None and d["lo"] is not None and d["diff"] >= TASTE_GAIN and d["lo"] > 0
    row(f"K={TASTE_K}: per-user like AUC − none (≥ {TASTE_GAIN}" + (")" if taste else "; reported, not judged)"),
        "–" if d is None else f"{d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]", ok if taste else None)
    harm = []
    for m in report["methods"]:
        d = diff(f"{m} - none", 1, "like_auc")
        if d is not None and d["hi"] is not None and d["hi"] < 0:
            harm.append(f"{m} {d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]")
    row("K=1: no adapter below none beyond noise (like AUC)", "; ".join(harm) or "none below", not harm)
    times = [(m, k, r["adapt_ms_p99"]) for m, per_k in report["results"].items() for k, r in per_k.items()
             if int(k) <= 20]
    slow = [t for t in times if t[2] >= P99_MS]
    worst = max(times, key=lambda t: t[2])
    row(f"adaptation p99 < {P99_MS:.0f} ms for K ≤ 20", f"slowest {worst[0]} K={worst[1]}: {worst[2]:.1f} ms",
        not slow)
    return rows


def print_rows(path: Path | str, adapter: str, report: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    print(f"\n{path}: adapter {adapter} (best meta-learner in the report: {report.get('best_meta')}), "
          f"{report['users']['measured']} measured users")
    for r in rows:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[r["pass"]]
        print(f"  {verdict:4}  {r['goal']:<62} {r['value']}")


def main(argv: list[str] | None = None) -> int:
    from recsys.pipeline import DEFAULT_ADAPTER

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="*", type=Path, help="coldstart.json files without ground-truth taste")
    ap.add_argument("--taste", nargs="*", type=Path, default=[], help="coldstart.json files of simulator runs")
    ap.add_argument("--adapter", default=DEFAULT_ADAPTER, help="the adapter judged (default: %(default)s)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out, failed = [], False
    for path, taste in [*((p, False) for p in args.reports), *((p, True) for p in args.taste)]:
        report = json.loads(path.read_text())
        rows = check(report, args.adapter, taste=taste)
        failed |= any(r["pass"] is False for r in rows)
        out.append({"report": str(path), "adapter": args.adapter, "best_meta": report.get("best_meta"),
                    "users": report["users"]["measured"], "rows": rows})
        if not args.json:
            print_rows(path, args.adapter, report, rows)
    if args.json:
        print(json.dumps(out, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
