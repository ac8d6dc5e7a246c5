"""The watch-next protocol: query items, negatives, labels, splits, cold-start isolation,
vocabularies from training rows only, and byte-identical output under a seed."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl
import pytest

from recsys.data.fields import OOV, PAD
from recsys.data.framing import NO_QUERY
from recsys.data.prepare import PrepareConfig, prepare_movielens
from recsys.data.sources.movielens import MovieLens
from recsys.errors import ConfigError

SPLITS = ("train", "valid", "test", "coldstart")


def _rows(prepared) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(prepared / f"{s}.parquet").with_columns(pl.lit(s).alias("split")) for s in SPLITS])


def test_columns_and_summary(prepared, tiny_ml):
    rows = _rows(prepared)
    for c in ("user_id", "item_id", "query_item_id", "timestamp", "click", "like", "rating", "event",
              "f_user_id", "f_user_age", "f_item_genres", "f_query_id", "f_query_genres"):
        assert c in rows.columns
    summary = json.loads((prepared / "summary.json").read_text())
    assert sum(summary["splits"][s]["positives"] for s in SPLITS) == tiny_ml.ratings.height
    assert sum(summary["splits"][s]["rows"] for s in SPLITS) == rows.height == 5 * tiny_ml.ratings.height
    assert summary["users"]["cold_start"] == 6  # round(0.2 * 30)


def test_query_item_is_previous_rated_item(prepared, tiny_ml):
    pos = _rows(prepared).filter(pl.col("click") == 1).sort("user_id", "timestamp", "item_id")
    expected = tiny_ml.ratings.sort("user_id", "timestamp", "item_id").with_columns(
        pl.col("item_id").shift(1).over("user_id").fill_null(NO_QUERY).alias("q"))
    assert pos["query_item_id"].to_list() == expected["q"].to_list()
    assert pos["event"].to_list() == expected.with_columns(pl.int_range(pl.len()).over("user_id").alias("e"))["e"].to_list()


def test_negatives_are_unrated_distinct_and_inherit_their_positive(prepared, tiny_ml):
    rows = _rows(prepared)
    neg = rows.filter(pl.col("click") == 0)
    rated = tiny_ml.ratings.select("user_id", "item_id")
    assert neg.join(rated, on=["user_id", "item_id"], how="inner").height == 0
    assert rows.select("user_id", "item_id", "timestamp").is_duplicated().sum() == 0
    pos = rows.filter(pl.col("click") == 1).select("user_id", "event", "timestamp", "query_item_id", "split")
    joined = neg.join(pos, on=["user_id", "event"], how="left", suffix="_pos")
    assert (joined["timestamp"] == joined["timestamp_pos"]).all()
    assert (joined["query_item_id"] == joined["query_item_id_pos"]).all()
    assert (joined["split"] == joined["split_pos"]).all()
    assert neg.group_by("user_id", "event").len()["len"].unique().to_list() == [4]


def test_labels(prepared, tiny_ml):
    rows = _rows(prepared)
    pos = rows.filter(pl.col("click") == 1).join(tiny_ml.ratings, on=["user_id", "item_id"], suffix="_raw")
    assert (pos["rating"] == pos["rating_raw"]).all()
    assert (pos["like"] == (pos["rating_raw"] >= 4).cast(pl.Int8)).all()
    neg = rows.filter(pl.col("click") == 0)
    assert neg["rating"].null_count() == neg.height and (neg["like"] == 0).all()


def test_per_user_temporal_split_has_no_leakage(prepared):
    rows = _rows(prepared).filter(pl.col("split") != "coldstart")
    order = {"train": 0, "valid": 1, "test": 2}
    for (user,), g in rows.group_by("user_id"):
        g = g.with_columns(pl.col("split").replace_strict(order).alias("rank"))
        per = g.group_by("rank").agg(pl.col("timestamp").min().alias("lo"), pl.col("timestamp").max().alias("hi"),
                                     pl.col("event").min().alias("elo"), pl.col("event").max().alias("ehi")).sort("rank")
        assert per["rank"].to_list() == [0, 1, 2], f"user {user} lacks a split"
        assert (per["hi"][:-1].to_numpy() <= per["lo"][1:].to_numpy()).all()
        assert (per["ehi"][:-1].to_numpy() < per["elo"][1:].to_numpy()).all()


def test_cold_start_users_are_isolated(prepared):
    rows = _rows(prepared)
    cold = set(rows.filter(pl.col("split") == "coldstart")["user_id"].to_list())
    warm = set(rows.filter(pl.col("split") != "coldstart")["user_id"].to_list())
    assert cold and not cold & warm
    assert (rows.filter(pl.col("split") == "coldstart")["f_user_id"] == OOV).all()
    vocab = json.loads((prepared / "vocab.json").read_text())
    assert set(vocab["user_id"]) == set(rows.filter(pl.col("split") == "train")["user_id"].to_list())
    assert set(vocab["item_id"]) == set(rows.filter(pl.col("split") == "train")["item_id"].to_list())
    users = pl.read_parquet(prepared / "users.parquet")
    assert set(users.filter(pl.col("is_cold"))["user_id"].to_list()) == cold


def test_cold_users_data_changes_nothing_the_model_learns_from(tmp_path, tiny_ml, prepared):
    """Rewrite every cold-start user's ratings: warm splits and vocabularies stay byte-identical."""
    cold = pl.read_parquet(prepared / "coldstart.parquet")["user_id"].unique()
    r = tiny_ml.ratings
    is_cold = pl.col("user_id").is_in(cold.implode())
    changed = pl.concat([
        r.filter(~is_cold),
        r.filter(is_cold).with_columns((6 - pl.col("rating")).alias("rating"), (pl.col("timestamp") + 7)).head(20),
    ])
    other = tmp_path / "other"
    prepare_movielens(MovieLens(changed, tiny_ml.users, tiny_ml.items), other, PrepareConfig())
    for f in ("train.parquet", "valid.parquet", "test.parquet", "vocab.json", "schema.json", "items.parquet"):
        assert (other / f).read_bytes() == (prepared / f).read_bytes(), f


def test_query_of_first_event_is_none_and_features_encode(prepared):
    rows = _rows(prepared)
    first = rows.filter(pl.col("query_item_id") == NO_QUERY)
    assert (first["f_query_id"] == PAD).all() and (first["f_query_genres"].list.len() == 0).all()
    later = rows.filter(pl.col("query_item_id") != NO_QUERY)
    assert (later["f_query_id"] >= OOV).all()
    # the query item's features are the item features of that item
    items = pl.read_parquet(prepared / "items.parquet").select("item_id", "f_item_id", "f_item_year")
    j = later.join(items, left_on="query_item_id", right_on="item_id")
    assert (j["f_query_id"] == j["f_item_id_right"]).all() and (j["f_query_year"] == j["f_item_year_right"]).all()


def _digests(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_same_seed_is_byte_identical_and_seed_matters(tmp_path, tiny_ml, prepared):
    again = tmp_path / "again"
    prepare_movielens(tiny_ml, again, PrepareConfig())
    assert _digests(again) == _digests(prepared)
    other = tmp_path / "seed1"
    prepare_movielens(tiny_ml, other, PrepareConfig(seed=1))
    assert _digests(other)["train.parquet"] != _digests(prepared)["train.parquet"]


def test_rewrite_replaces_the_directory_atomically(tmp_path, tiny_ml, prepared, monkeypatch):
    before = _digests(prepared)
    import recsys.data.prepare as P

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(P, "_summary", boom)
    with pytest.raises(RuntimeError):
        prepare_movielens(tiny_ml, prepared, PrepareConfig(seed=3))
    assert _digests(prepared) == before
    assert [p.name for p in prepared.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("kwargs", [{"negatives": -1}, {"cold_frac": 1.0}, {"valid_frac": 0.0}])
def test_bad_protocol_options(kwargs):
    with pytest.raises(ConfigError):
        PrepareConfig(**kwargs)


def test_too_many_negatives_is_a_clear_error(tmp_path, tiny_ml):
    from recsys.errors import DataValidationError

    with pytest.raises(DataValidationError, match="distinct negatives"):
        prepare_movielens(tiny_ml, tmp_path / "x", PrepareConfig(negatives=40))
    assert not (tmp_path / "x").exists()


def test_split_counts_match_the_protocol(prepared):
    rows = _rows(prepared).filter((pl.col("click") == 1) & (pl.col("split") != "coldstart"))
    counts = rows.group_by("user_id", "split").len().pivot("split", index="user_id", values="len").fill_null(0)
    n = counts["train"] + counts["valid"] + counts["test"]
    expected = np.maximum(1, np.floor(0.1 * n.to_numpy()))
    assert (counts["valid"].to_numpy() == expected).all() and (counts["test"].to_numpy() == expected).all()
