"""Cold-start metrics reduced to per-user statistics, and the paired user-level bootstrap.

Every metric of the cold-start report is a function of per-user sufficient statistics and a
vector c [U] of user multiplicities: all ones for the measured sample, or how often each user
was drawn in one bootstrap resample (Efron & Tibshirani 1993; users, not rows, are resampled
because a user's rows are not independent):

    pooled AUC      cᵀ P c / ((c·n_pos)(c·n_neg)),  P[u, v] = Σ over u's positive rows i and v's
                    negative rows j of [s_i > s_j] + ½[s_i = s_j]  (Mann–Whitney, ties ½ as in
                    `recsys.metrics.auc`)
    per-user mean   c·(m ⊙ ok) / c·ok   (per-user AUC, NDCG@10, taste; users without a value skipped)
    pooled error    c·sse / c·n  (MAE: absolute errors; RMSE: its square root)

With C [B, U] holding B resamples, a pooled AUC of every resample at once is ((C P) ⊙ C).sum(1):
no Python loop over resamples, and exactly the AUC of the resampled *rows* (a user drawn twice
contributes their rows twice). Two methods compared with the same C give a paired bootstrap of
the difference.

Shapes: N rows, U users, B resamples.

Example:
    >>> import numpy as np
    >>> y = np.array([1, 0, 1, 0]); s = np.array([0.9, 0.1, 0.2, 0.8]); g = np.array([0, 0, 1, 1])
    >>> stat = pair_stat(y, s, g, 2)
    >>> float(metric_values({"auc": stat})["auc"][0])   # 3 of the 4 (positive, negative) pairs ordered
    0.75
    >>> metric_values({"auc": stat}, np.array([[2.0, 0.0]]))["auc"]   # user 0 drawn twice, user 1 not
    array([1.])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys import metrics as M
from recsys.data.fields import TASK_KINDS

NDCG_K = 10


@dataclass(frozen=True)
class PairStat:
    """A pooled AUC: `pairs` [U, U] ordered positive–negative pairs, `pos` / `neg` [U] counts."""

    pairs: np.ndarray
    pos: np.ndarray
    neg: np.ndarray


@dataclass(frozen=True)
class MeanStat:
    """A per-user metric averaged over users: `values` [U], NaN where the user has none."""

    values: np.ndarray


@dataclass(frozen=True)
class ErrorStat:
    """A pooled error: per-user `total` [U] of squared (``root``: RMSE) or absolute errors over `count` [U] rows."""

    total: np.ndarray
    count: np.ndarray
    root: bool


Stat = PairStat | MeanStat | ErrorStat


# --------------------------------------------------------------------------- statistics


def pair_stat(y: np.ndarray, scores: np.ndarray, users: np.ndarray, n_users: int) -> PairStat:
    """Per-user-pair counts of correctly ordered (positive, negative) rows.

    Args:
        y: [N] binary labels.
        scores: [N] scores.
        users: [N] user index in ``0..n_users-1``.
        n_users: U.

    Returns:
        The `PairStat`; ``pairs.sum() / (pos.sum() * neg.sum())`` is `recsys.metrics.auc`.
    """
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    users = np.asarray(users, dtype=np.int64)
    pos_s, pos_u = scores[y], users[y]
    neg_s, neg_u = scores[~y], users[~y]
    order = np.lexsort((neg_s, neg_u))                  # negatives sorted by (user, score)
    neg_s, neg_u = neg_s[order], neg_u[order]
    bounds = np.searchsorted(neg_u, np.arange(n_users + 1))
    pairs = np.zeros((n_users, n_users))
    for v in np.flatnonzero(np.diff(bounds)):           # one searchsorted per user with negatives
        block = neg_s[bounds[v]:bounds[v + 1]]
        below = np.searchsorted(block, pos_s, side="left")
        tied = np.searchsorted(block, pos_s, side="right") - below
        pairs[:, v] = np.bincount(pos_u, weights=below + 0.5 * tied, minlength=n_users)
    return PairStat(pairs, np.bincount(pos_u, minlength=n_users).astype(np.float64),
                    np.bincount(neg_u, minlength=n_users).astype(np.float64))


def _spread(per_group: np.ndarray, groups: np.ndarray, n_users: int) -> np.ndarray:
    """Values in order of ``np.unique(groups)`` → [U] (NaN for users with no rows)."""
    out = np.full(n_users, np.nan)
    out[np.unique(groups)] = per_group
    return out


def grouped_spearman(a: np.ndarray, b: np.ndarray, users: np.ndarray, n_users: int) -> np.ndarray:
    """[U] Spearman correlation of `a` and `b` within each user (NaN: under 2 rows or a constant)."""
    ra, rb = M._rank_average(np.asarray(a, np.float64), users), M._rank_average(np.asarray(b, np.float64), users)
    n = np.bincount(users, minlength=n_users).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = np.bincount(users, ra, n_users) / n
        mb = np.bincount(users, rb, n_users) / n
        da, db = ra - ma[users], rb - mb[users]
        cov = np.bincount(users, da * db, n_users)
        var = np.bincount(users, da * da, n_users) * np.bincount(users, db * db, n_users)
        return np.where((n >= 2) & (var > 0), cov / np.sqrt(var), np.nan)


def user_stats(y: np.ndarray, pred: dict[str, np.ndarray], users: np.ndarray, n_users: int,
               tasks: tuple[str, ...], *, truth: dict[str, np.ndarray] | None = None,
               esmm: bool = False) -> dict[str, Stat]:
    """The statistics of every cold-start metric for one scorer's predictions.

    Metrics (per binary task t, regression task r):
        ``t_auc`` pooled AUC; ``t_user_auc`` per-user AUC; ``t_ndcg@10`` per-user NDCG@10 of the
        user's candidates; ``like_click_auc`` / ``like_click_user_auc`` like among clicked rows,
        scored by p(like | click) (``pred["like_given_click"]`` under ESMM); ``r_rmse`` / ``r_mae``
        on observed rows; with simulator `truth`, ``taste_spearman`` (per-user rank correlation of
        the like score with the true like probability) and ``taste_user_auc`` (per-user AUC of the
        like score at telling the user's truly better half of candidates from the worse half).

    Args:
        y: [N, T] labels in `tasks` order, NaN = missing.
        pred: task -> [N] probabilities / values (as `recsys.evaluate.predict`).
        users: [N] user index in ``0..n_users-1``.
        n_users: U.
        tasks: column order of `y`.
        truth: optional ``true_*`` -> [N] simulator ground truth.
        esmm: the like prediction is p(click) p(like | click) (taste then uses p(like | click)).

    Returns:
        metric name -> `Stat`.
    """
    users = np.asarray(users, dtype=np.int64)
    stats: dict[str, Stat] = {}
    for j, task in enumerate(tasks):
        if task not in pred:
            continue
        seen = ~np.isnan(y[:, j])
        label, p, u = y[seen, j], pred[task][seen], users[seen]
        if TASK_KINDS[task] == "binary":
            stats[f"{task}_auc"] = pair_stat(label, p, u, n_users)
            stats[f"{task}_user_auc"] = MeanStat(_spread(M.grouped_auc(label, p, u).per_group, u, n_users))
            ndcg, _ = M.grouped_ndcg_recall(label, p, u, k=NDCG_K)
            stats[f"{task}_ndcg@{NDCG_K}"] = MeanStat(_spread(ndcg, u, n_users))
        else:
            err = p - label
            count = np.bincount(u, minlength=n_users).astype(np.float64)
            stats[f"{task}_rmse"] = ErrorStat(np.bincount(u, err * err, n_users), count, root=True)
            stats[f"{task}_mae"] = ErrorStat(np.bincount(u, np.abs(err), n_users), count, root=False)
    like_score = pred.get("like_given_click", pred.get("like"))
    if {"click", "like"} <= set(tasks) and like_score is not None:
        click, like = y[:, tasks.index("click")], y[:, tasks.index("like")]
        rows = (click == 1) & ~np.isnan(like)
        label, p, u = like[rows], like_score[rows], users[rows]
        stats["like_click_auc"] = pair_stat(label, p, u, n_users)
        stats["like_click_user_auc"] = MeanStat(_spread(M.grouped_auc(label, p, u).per_group, u, n_users))
    true_like = _true_like(truth or {}, esmm)
    if true_like is not None and like_score is not None:
        stats["taste_spearman"] = MeanStat(grouped_spearman(like_score, true_like, users, n_users))
        rank = M._rank_average(true_like.astype(np.float64), users)
        n = np.bincount(users, minlength=n_users)
        better_half = rank > (n[users] + 1) / 2.0
        per = M.grouped_auc(better_half, like_score, users).per_group if len(users) else np.zeros(0)
        stats["taste_user_auc"] = MeanStat(_spread(per, users, n_users))
    return stats


def _true_like(truth: dict[str, np.ndarray], esmm: bool) -> np.ndarray | None:
    """The true like probability matching the like score: conditional on click under ESMM."""
    order = ("true_p_like", "true_p_like_uncond") if esmm else ("true_p_like_uncond", "true_p_like")
    for key in order:
        if key in truth:
            return np.asarray(truth[key], dtype=np.float64)
    return None


# --------------------------------------------------------------------------- values


def metric_values(stats: dict[str, Stat], counts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every metric under user multiplicities `counts`.

    Args:
        stats: metric -> `Stat` (from `user_stats`).
        counts: [B, U] how often each user is drawn in each of B resamples; None = the sample
            itself (B = 1, every user once).

    Returns:
        metric -> [B] values; NaN where a resample leaves a metric undefined (one class only,
        no user with a value).
    """
    out: dict[str, np.ndarray] = {}
    for name, stat in stats.items():
        c = np.ones((1, _n_users(stat))) if counts is None else np.asarray(counts, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            if isinstance(stat, PairStat):
                num = ((c @ stat.pairs) * c).sum(axis=1)
                out[name] = num / ((c @ stat.pos) * (c @ stat.neg))
            elif isinstance(stat, MeanStat):
                ok = ~np.isnan(stat.values)
                out[name] = (c[:, ok] @ stat.values[ok]) / c[:, ok].sum(axis=1)
            else:
                mean = (c @ stat.total) / (c @ stat.count)
                out[name] = np.sqrt(mean) if stat.root else mean
    return out


def _n_users(stat: Stat) -> int:
    if isinstance(stat, PairStat):
        return len(stat.pos)
    return len(stat.values) if isinstance(stat, MeanStat) else len(stat.count)


def point_metrics(stats: dict[str, Stat]) -> dict[str, Any]:
    """The sample's metrics as floats (None when undefined), with ``_users`` / ``_skipped`` counts
    for per-user metrics."""
    out: dict[str, Any] = {}
    for name, values in metric_values(stats).items():
        v = float(values[0])
        out[name] = v if np.isfinite(v) else None
        stat = stats[name]
        if isinstance(stat, MeanStat):
            used = int((~np.isnan(stat.values)).sum())
            out[f"{name}_users"], out[f"{name}_skipped"] = used, len(stat.values) - used
    return out


# --------------------------------------------------------------------------- bootstrap


def bootstrap_counts(n_users: int, n_boot: int, seed: int) -> np.ndarray:
    """[B, U] multiplicities of U users resampled with replacement, B times, seeded."""
    rng = np.random.default_rng([seed, 0xB007])
    if n_users == 0:
        return np.zeros((n_boot, 0))
    return rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=n_boot).astype(np.float64)


def compare(point_a: dict[str, np.ndarray], point_b: dict[str, np.ndarray],
            boot_a: dict[str, np.ndarray], boot_b: dict[str, np.ndarray], *, level: float = 0.95
            ) -> dict[str, dict[str, Any]]:
    """Difference a − b of every shared metric with its percentile interval.

    Args:
        point_a, point_b: metric -> [1] sample values (`metric_values(stats)`).
        boot_a, boot_b: metric -> [B] values under the SAME resamples (paired).
        level: interval coverage.

    Returns:
        metric -> ``{"diff", "boot_mean", "lo", "hi", "excludes_zero", "resamples"}``; the
        interval is over resamples where both are defined (None when none is).
    """
    tail = 100.0 * (1.0 - level) / 2.0
    out: dict[str, dict[str, Any]] = {}
    for name in point_a.keys() & point_b.keys():
        diff = float(point_a[name][0] - point_b[name][0])
        d = boot_a[name] - boot_b[name]
        d = d[np.isfinite(d)]
        row: dict[str, Any] = {"diff": diff if np.isfinite(diff) else None, "boot_mean": None, "lo": None,
                               "hi": None, "excludes_zero": False, "resamples": int(len(d))}
        if len(d):
            lo, hi = np.percentile(d, [tail, 100.0 - tail])
            row.update(boot_mean=float(d.mean()), lo=float(lo), hi=float(hi), excludes_zero=bool(lo > 0 or hi < 0))
        out[name] = row
    return {k: out[k] for k in sorted(out)}


def paired_bootstrap(a: dict[str, Stat], b: dict[str, Stat], *, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, dict[str, Any]]:
    """User-level paired bootstrap of the difference a − b in every metric.

    Both statistics must be over the same U users in the same order (the same query rows,
    scored by two methods). Each resample draws U users with replacement and recomputes each
    metric for both methods on the drawn users (pooled AUC on their rows, per-user metrics
    averaged over them).

    Args:
        a, b: metric -> `Stat` of the two methods (`user_stats`).
        n_boot: resamples B.
        seed: seed of the resamples.
        level: interval coverage (0.95: the 2.5th and 97.5th percentiles).

    Returns:
        As `compare`.
    """
    n_users = {_n_users(s) for s in (*a.values(), *b.values())}
    if len(n_users) > 1:
        raise ValueError(f"paired statistics must cover the same users, got user counts {sorted(n_users)}")
    counts = bootstrap_counts(n_users.pop() if n_users else 0, n_boot, seed)
    return compare(metric_values(a), metric_values(b), metric_values(a, counts), metric_values(b, counts), level=level)
