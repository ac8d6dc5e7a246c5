"""Vocabularies, buckets and the split protocol as properties."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.features import AGE_LABELS, Vocabulary, bucket
from recsys.data.fields import FIRST_ID, OOV
from recsys.data.framing import add_events, sample_negatives
from recsys.data.splits import assign_splits, pick_cold_users, split_sizes


@given(train=st.lists(st.text(max_size=3), max_size=20), other=st.lists(st.text(max_size=3), max_size=20))
@settings(max_examples=60, deadline=None)
def test_vocabulary_maps_known_values_and_oov(train, other):
    vocab = Vocabulary.fit("v", pl.Series(train, dtype=pl.Utf8))
    ids = vocab.encode(pl.Series(train + other, dtype=pl.Utf8)).to_list()
    known = set(train)
    for v, i in zip(train + other, ids):
        if v in known:
            assert vocab.values[i - FIRST_ID] == v
        else:
            assert i == OOV
    assert vocab.size == FIRST_ID + len(known)


def test_vocabulary_encodes_lists_keeping_empty_rows():
    vocab = Vocabulary.fit("g", pl.Series([["a", "b"], ["c"]]))
    out = vocab.encode(pl.Series([["b", "z"], [], ["a"]])).to_list()
    assert out == [[3, OOV], [], [2]]


def test_age_buckets():
    ages = pl.DataFrame({"age": [7, 18, 24, 25, 49, 50, 56, 90, None]})
    got = ages.select(bucket(pl.col("age"), (18, 25, 35, 45, 50, 56), AGE_LABELS).alias("age"))["age"].to_list()
    assert got == ["under 18", "18-24", "18-24", "25-34", "45-49", "50-55", "56+", "56+", "unknown"]


@given(n=st.integers(0, 500))
def test_split_sizes(n):
    nv, nt = split_sizes(np.array([n]))
    if n >= 3:
        assert nv[0] >= 1 and nt[0] >= 1 and n - nv[0] - nt[0] >= 1
    else:
        assert nv[0] == nt[0] == 0


@given(n_users=st.integers(1, 50), frac=st.floats(0, 0.9), seed=st.integers(0, 5))
@settings(max_examples=40, deadline=None)
def test_cold_users_are_a_seeded_subset(n_users, frac, seed):
    ids = np.arange(1, n_users + 1)
    cold = pick_cold_users(ids, frac, seed)
    assert len(cold) == round(frac * n_users) and set(cold) <= set(ids)
    assert np.array_equal(cold, pick_cold_users(ids[::-1], frac, seed))


@given(st.data())
@settings(max_examples=40, deadline=None)
def test_negatives_and_splits_on_random_histories(data):
    n_items = data.draw(st.integers(8, 30))
    n_users = data.draw(st.integers(1, 6))
    rows = []
    for u in range(1, n_users + 1):
        k = data.draw(st.integers(1, 4))
        items = data.draw(st.lists(st.integers(1, n_items), min_size=k, max_size=k, unique=True))
        ts = sorted(data.draw(st.lists(st.integers(0, 3), min_size=k, max_size=k)))
        rows += [(u, i, 3.0, t) for i, t in zip(items, ts)]
    ratings = pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float32, "timestamp": pl.Int64}, orient="row")
    pos = add_events(ratings)
    neg = sample_negatives(pos, np.arange(1, n_items + 1), per_positive=1, seed=0)
    assert neg.height == pos.height
    assert neg.join(ratings, on=["user_id", "item_id"]).height == 0
    assert neg.select("user_id", "timestamp", "item_id").is_duplicated().sum() == 0
    split = assign_splits(pos.select("user_id", "event"), np.array([], dtype=np.int64))
    assert split.height == pos.height and set(split["split"]) <= {"train", "valid", "test"}


@given(n=st.integers(2, 60), seed=st.integers(0, 3))
@settings(max_examples=30, deadline=None)
def test_cold_users_split_into_validation_and_test(n, seed):
    from recsys.data.splits import split_cold_users

    ids = np.arange(100, 100 + n)
    valid, test = split_cold_users(ids, seed=seed)
    assert len(valid) == round(n / 3) and not set(valid) & set(test) and set(valid) | set(test) == set(ids)
    again, _ = split_cold_users(ids[::-1], seed=seed)
    assert np.array_equal(valid, again)
