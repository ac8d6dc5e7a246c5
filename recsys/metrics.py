"""Ranking and prediction metrics, pooled and per user, vectorised over groups.

Every metric here is checked against scikit-learn on random inputs (tests/test_metrics.py).
Per-user metrics take a `groups` array (the user of each row) and work on all users at once:
no Python loop over users.

    auc(y, s)                         ROC AUC (ties count 1/2), None for a single class
    logloss(y, p)                     binary cross-entropy, probabilities clipped to [1e-7, 1-1e-7]
    rmse(y, yhat) / mae(y, yhat)
    grouped_auc(y, s, groups)         per-group AUC; mean over groups with both classes + skip count
    grouped_ndcg_recall(y, s, groups, k)   NDCG@k and Recall@k of each group's candidates

Reference for NDCG: Järvelin & Kekäläinen, TOIS 2002 (binary gains, log2 discount, as in
`sklearn.metrics.ndcg_score`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-7


def _rank_average(scores: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """1-based ranks of `scores` within each group, ties given their average rank."""
    n = len(scores)
    if groups is None:
        groups = np.zeros(n, dtype=np.int64)
    order = np.lexsort((scores, groups))
    s, g = scores[order], groups[order]
    # Blocks of equal (group, score): every member gets the mean of the block's positions.
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = (s[1:] != s[:-1]) | (g[1:] != g[:-1])
    block = np.cumsum(new_block) - 1
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = g[1:] != g[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    pos = np.arange(n) - group_start + 1.0
    block_sum = np.bincount(block, weights=pos)
    block_len = np.bincount(block)
    ranks = np.empty(n)
    ranks[order] = (block_sum / block_len)[block]
    return ranks


def auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of binary labels `y` [N] against `scores` [N]; None when only one class is present."""
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _rank_average(scores)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities `p` [N] for labels `y` [N]."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, np.float64) - np.asarray(yhat, np.float64)) ** 2)))


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, np.float64) - np.asarray(yhat, np.float64))))


@dataclass(frozen=True)
class GroupedAUC:
    """Per-group AUC: `mean` over the `used` groups that hold both classes; `skipped` others."""

    mean: float | None
    used: int
    skipped: int
    per_group: np.ndarray  # [G] AUC per group in order of np.unique(groups); NaN where skipped


def grouped_auc(y: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> GroupedAUC:
    """AUC within each group (user), averaged over groups that have both classes.

    Args:
        y: [N] binary labels.
        scores: [N] scores.
        groups: [N] group id of each row.
    """
    y = np.asarray(y).astype(bool)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(g.max()) + 1 if len(g) else 0
    ranks = _rank_average(np.asarray(scores, dtype=np.float64), g)
    n_pos = np.bincount(g, weights=y, minlength=n_groups)
    n_all = np.bincount(g, minlength=n_groups)
    n_neg = n_all - n_pos
    rank_pos = np.bincount(g, weights=np.where(y, ranks, 0.0), minlength=n_groups)
    ok = (n_pos > 0) & (n_neg > 0)
    per = np.full(n_groups, np.nan)
    per[ok] = (rank_pos[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    used = int(ok.sum())
    return GroupedAUC(mean=float(per[ok].mean()) if used else None, used=used,
                      skipped=n_groups - used, per_group=per)


def grouped_ndcg_recall(y: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int = 10
                        ) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@k and Recall@k of each group's candidates ranked by `scores`.

    Gains are the binary labels; ties in score are broken by row order (stable). Groups with
    no positive get NaN.

    Returns:
        ([G] NDCG@k, [G] Recall@k) in order of np.unique(groups).
    """
    y = np.asarray(y, dtype=np.float64)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(g.max()) + 1 if len(g) else 0
    order = np.lexsort((np.arange(len(y)), -np.asarray(scores, dtype=np.float64), g))
    gs, ys = g[order], y[order]
    start = np.searchsorted(gs, np.arange(n_groups))
    rank = np.arange(len(gs)) - start[gs]                       # 0-based rank within group
    top = rank < k
    discount = 1.0 / np.log2(rank + 2.0)
    dcg = np.bincount(gs, weights=np.where(top, ys * discount, 0.0), minlength=n_groups)
    n_pos = np.bincount(g, weights=y, minlength=n_groups)
    hits = np.bincount(gs, weights=np.where(top, ys, 0.0), minlength=n_groups)
    ideal_len = np.minimum(n_pos, k).astype(np.int64)
    cum_disc = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])
    idcg = cum_disc[ideal_len]
    with np.errstate(invalid="ignore", divide="ignore"):
        ndcg = np.where(n_pos > 0, dcg / idcg, np.nan)
        recall = np.where(n_pos > 0, hits / n_pos, np.nan)
    return ndcg, recall
