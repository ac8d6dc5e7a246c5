"""Our metrics agree with scikit-learn's on random inputs (ties and single-class users included)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, mean_squared_error, ndcg_score, roc_auc_score

from recsys import metrics as M


@given(seed=st.integers(0, 10_000), n=st.integers(2, 200), ties=st.booleans())
@settings(max_examples=80, deadline=None)
def test_auc_matches_sklearn(seed, n, ties):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.integers(0, 5, n).astype(float) if ties else rng.normal(size=n)
    ours = M.auc(y, s)
    if len(set(y)) < 2:
        assert ours is None
    else:
        assert ours == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@given(seed=st.integers(0, 10_000), n=st.integers(1, 300), groups=st.integers(1, 12), ties=st.booleans())
@settings(max_examples=80, deadline=None)
def test_grouped_auc_matches_per_user_sklearn(seed, n, groups, ties):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.integers(0, 4, n).astype(float) if ties else rng.normal(size=n)
    g = rng.integers(0, groups, n) * 7  # non-contiguous ids
    out = M.grouped_auc(y, s, g)
    expected, skipped = [], 0
    for gid in np.unique(g):
        m = g == gid
        if len(set(y[m])) < 2:
            skipped += 1
        else:
            expected.append(roc_auc_score(y[m], s[m]))
    assert out.skipped == skipped and out.used == len(expected)
    if expected:
        assert out.mean == pytest.approx(np.mean(expected), abs=1e-12)
    else:
        assert out.mean is None


@given(seed=st.integers(0, 10_000), groups=st.integers(1, 8), k=st.integers(1, 12))
@settings(max_examples=60, deadline=None)
def test_ndcg_and_recall_match_sklearn(seed, groups, k):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 20, groups)
    g = np.repeat(np.arange(groups), sizes)
    y = rng.integers(0, 2, len(g))
    s = rng.normal(size=len(g))  # no ties: sklearn averages ties, we break them by order
    ndcg, recall = M.grouped_ndcg_recall(y, s, g, k=k)
    for gid in range(groups):
        m = g == gid
        if y[m].sum() == 0:
            assert np.isnan(ndcg[gid]) and np.isnan(recall[gid])
            continue
        assert ndcg[gid] == pytest.approx(ndcg_score([y[m]], [s[m]], k=k), abs=1e-12)
        top = np.argsort(-s[m])[:k]
        assert recall[gid] == pytest.approx(y[m][top].sum() / y[m].sum())


def test_logloss_and_rmse_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = rng.uniform(0, 1, 500)
    p[:3] = [0.0, 1.0, 0.5]
    assert M.logloss(y, p) == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), rel=1e-9)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert M.rmse(a, b) == pytest.approx(np.sqrt(mean_squared_error(a, b)))
    assert M.mae(a, b) == pytest.approx(np.mean(np.abs(a - b)))
