"""Every index: the same checks, no −1 ids, k clamped, tuned to a recall target."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import ConfigError, DataValidationError
from recsys.retrieval.base import exact_topk, recall_at_k
from recsys.retrieval.registry import INDEXES, build_index


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16)).astype(np.float32)
    x = centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16)).astype(np.float32)
    q = centres[rng.integers(0, 20, 50)] + 0.3 * rng.normal(size=(50, 16)).astype(np.float32)
    return x.astype(np.float32), q.astype(np.float32), np.arange(3000, dtype=np.int64) * 3 + 7


def test_exact_topk_matches_numpy(clustered):
    x, q, _ = clustered
    scores, rows = exact_topk(x, q, 25, chunk=700)  # several chunks
    full = q @ x.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :25]
    assert np.allclose(scores, np.take_along_axis(full, expected, 1), atol=1e-5)
    assert recall_at_k(rows, expected) == 1.0


@pytest.mark.parametrize("name", sorted(INDEXES))
def test_index_contract(name, clustered):
    x, q, ids = clustered
    index = build_index(name, 16).build(x, ids)
    tuned = index.tune(q, k=50, target_recall=0.9)
    assert tuned["reached"] and tuned["recall"] >= 0.9
    scores, got = index.search(q, 50)
    assert got.shape == (50, 50) and (got >= 0).all() and np.isin(got, ids).all()
    assert (np.diff(scores, axis=1) <= 1e-5).all()  # best first
    _, all_items = index.search(q[:2], 10_000)  # k > n is clamped, never padded with −1
    assert all_items.shape == (2, 3000) and (all_items >= 0).all()
    _, one = index.search(q[0], 5)  # a single 1-D query
    assert one.shape == (1, 5)


@pytest.mark.parametrize("name", sorted(INDEXES))
def test_index_rejects_bad_input(name, clustered):
    x, q, ids = clustered
    index = build_index(name, 16)
    with pytest.raises(ConfigError, match="empty"):
        index.search(q, 5)
    index.build(x, ids)
    with pytest.raises(DataValidationError, match="dimension 8, the index has 16"):
        index.search(q[:, :8], 5)
    bad = q.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataValidationError, match="NaN or inf, first at row 3"):
        index.search(bad, 5)
    with pytest.raises(DataValidationError, match="float32"):
        index.search(q.astype(np.int32), 5)
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        index.search(q, 0)
    with pytest.raises(DataValidationError, match="unique"):
        build_index(name, 16).build(x[:10], np.zeros(10, dtype=np.int64))


def test_unfilled_rows_are_redone_exactly(clustered):
    x, q, ids = clustered
    index = build_index("ivf_flat", 16, nlist=64, nprobe=1).build(x, ids)
    _, got = index.search(q, 500)  # one cell holds ~50 vectors: FAISS pads with −1
    assert (got >= 0).all()
    _, exact = exact_topk(x, q, 500)
    assert recall_at_k(got, ids[exact]) == 1.0


def test_registry_errors():
    with pytest.raises(ConfigError, match="unknown index 'annoy'"):
        build_index("annoy", 8)
    with pytest.raises(ConfigError, match="unknown parameter"):
        build_index("hnsw", 8, efsearch=3)


@pytest.mark.parametrize("queries", [1, 7])
@pytest.mark.parametrize("chunk", [None, 256, 1000])
def test_exact_topk_keeps_the_top_k_across_blocks(queries, chunk):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5000, 8)).astype(np.float32)
    q = rng.normal(size=(queries, 8)).astype(np.float32)
    scores, rows = exact_topk(x, q, 300, chunk=chunk)  # k larger than a block: the first block grows to k
    full = q @ x.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :300]
    assert rows.shape == (queries, 300) and recall_at_k(rows, expected) == 1.0
    assert np.allclose(scores, np.take_along_axis(full, expected, 1), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_tie_recall_counts_any_copy_of_a_tied_vector():
    from recsys.retrieval.base import tie_recall_at_k

    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 4)).astype(np.float32)
    q = rng.normal(size=(1, 4)).astype(np.float32)
    _, exact = exact_topk(x, q, 10)
    x = np.concatenate([x, x[exact[0, -1:]]])  # row 100: a copy of the 10th best, tied with it
    _, exact = exact_topk(x, q, 10)
    copies = np.flatnonzero((x == x[exact[0, -1]]).all(1))
    assert len(copies) == 2
    other = exact.copy()
    other[0, -1] = copies[copies != exact[0, -1]][0]  # the other copy of the tie
    assert tie_recall_at_k(x, q, other, exact) == 1.0 and recall_at_k(other, exact) == 0.9
    worse = exact.copy()
    worse[0, -1] = int(np.argsort(q @ x.T)[0, 0])  # the worst item is a miss
    worse[0, 0] = -1  # and so is an unfilled slot
    assert tie_recall_at_k(x, q, worse, exact) == pytest.approx(0.8)


def test_choose_index_reports_and_limits_build_time(clustered):
    from recsys.retrieval.select import choose_index

    x, q, ids = clustered
    choice = choose_index(x, ids, q, k=50, target_recall=0.9, types=("flat", "ivf_flat"), latency_queries=10)
    assert {r["type"] for r in choice["table"]} == {"flat", "ivf_flat"}
    assert all(r["qualifies"] and r["build_s"] >= 0 and 0 <= r["id_recall"] <= r["recall"] for r in choice["table"])
    slow = choose_index(x, ids, q, k=50, target_recall=0.9, types=("ivf_flat",), latency_queries=10, max_build_s=0.0)
    assert not slow["table"][0]["qualifies"] and slow["type"] == "ivf_flat"  # nothing qualified: the best recall
