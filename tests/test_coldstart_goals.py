"""scripts/coldstart_goals.py: each of issue #4's goals passes and fails where it should."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from coldstart_goals import check  # noqa: E402


def _d(diff, lo, hi):
    return {"diff": diff, "lo": lo, "hi": hi, "excludes_zero": lo > 0 or hi < 0}


def _report(*, beat_lo=0.001, share=0.6, taste=0.025, k1_hi=0.001, p99=7.0):
    shots = (0, 1, 3, 5, 10, 20)
    res = {m: {str(k): {"like_auc": 0.80 + (0.01 if m == "bb" and k else 0.0), "adapt_ms_p99": p99}
               for k in shots} for m in ("none", "finetune", "bb")}
    paired = {"bb - finetune": {str(k): {"like_auc": _d(0.004, beat_lo, 0.008)} for k in shots},
              "bb - none": {str(k): {"like_auc": _d(0.01, -0.002 if k == 1 else 0.005, k1_hi if k == 1 else 0.02),
                                     "like_user_auc": _d(taste, taste - 0.005, taste + 0.005)} for k in shots},
              "finetune - none": {str(k): {"like_auc": _d(0.0, -0.001, 0.001)} for k in shots}}
    return {"methods": ["none", "finetune", "bb"], "results": res, "paired": paired, "gap_reference": "oracle",
            "gap_closed": {"like_auc": {"bb": {"5": share}}}, "gap_intervals": {}, "warm": {"like_auc": 0.79}}


def _verdicts(report, taste=True):
    return [r["pass"] for r in check(report, "bb", taste=taste)]


def test_every_goal_passes_and_fails_on_its_own():
    assert _verdicts(_report()) == [True, True, True, None, True, True, True]
    assert _verdicts(_report(beat_lo=-0.001))[:2] == [False, False]          # interval touches 0
    assert _verdicts(_report(share=0.4))[2] is False                          # under half the gap
    assert _verdicts(_report(taste=0.015))[4] is False                        # per-user gain under 0.02
    assert _verdicts(_report(taste=0.015), taste=False)[4] is None            # MovieLens: reported only
    assert _verdicts(_report(k1_hi=-0.0005))[5] is False                      # K = 1 harm beyond noise
    assert _verdicts(_report(p99=60.0))[6] is False                           # too slow to run live
