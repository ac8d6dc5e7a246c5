"""The YouTube-like simulator: schema, determinism, biases, label consistency, config checks."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.sources import synthetic
from recsys.data.sources.synthetic import SimConfig, SimulatedWorld, simulate
from recsys.errors import ConfigError

TINY = SimConfig(users=60, items=80, impressions=3_000, seed=3)
MEDIUM = SimConfig(users=300, items=300, impressions=50_000, seed=11)

IMPRESSION_SCHEMA = {
    "user_id": pl.Int64, "item_id": pl.Int64, "query_item_id": pl.Int64, "request_id": pl.Int64,
    "timestamp": pl.Int64, "position": pl.Int16, "click": pl.Int8, "like": pl.Int8,
    "rating": pl.Float32, "watch_fraction": pl.Float32, "true_p_click": pl.Float32,
    "true_p_relevance": pl.Float32, "true_p_like": pl.Float32, "true_p_like_uncond": pl.Float32,
}


@pytest.fixture(scope="module")
def tiny() -> SimulatedWorld:
    return simulate(TINY)


@pytest.fixture(scope="module")
def medium() -> SimulatedWorld:
    return simulate(MEDIUM)


def with_items(world: SimulatedWorld) -> pl.DataFrame:
    return world.impressions.join(world.items, on="item_id", how="left")


def test_schema_and_dtypes(tiny):
    assert dict(tiny.impressions.schema) == IMPRESSION_SCHEMA
    assert tiny.impressions.height == TINY.impressions
    assert dict(tiny.users.schema) == {
        "user_id": pl.Int64, "age_bucket": pl.String, "gender": pl.String, "region": pl.String,
        "activity": pl.String, "is_new": pl.Boolean,
    }
    assert tiny.users["user_id"].to_list() == list(range(1, TINY.users + 1))
    assert dict(tiny.items.schema) == {
        "item_id": pl.Int64, "title": pl.String, "topic": pl.Int64, "duration_bucket": pl.String,
        "quality": pl.Float32, "click_appeal": pl.Float32, "is_clickbait": pl.Boolean,
        "popularity": pl.Float32,
    }
    assert tiny.items["item_id"].to_list() == list(range(1, TINY.items + 1))
    assert tiny.items["title"].n_unique() == TINY.items
    assert tiny.items["title"][0].startswith(f"topic-{tiny.items['topic'][0]} video ")
    assert set(tiny.users["activity"].unique()) <= {"low", "med", "high"}
    assert tiny.user_interest.shape == (TINY.users, TINY.topics)
    assert tiny.user_interest.dtype == np.float32


def test_rows_sorted_one_slate_per_request(tiny):
    imp = tiny.impressions
    assert imp.equals(imp.sort("user_id", "timestamp", "position"))
    per_request = imp.group_by("request_id").agg(
        n=pl.len(), users=pl.col("user_id").n_unique(), times=pl.col("timestamp").n_unique(),
        queries=pl.col("query_item_id").n_unique(), positions=pl.col("position").sort())
    assert (per_request["n"] == TINY.slate_size).all()
    assert (per_request["users"] == 1).all() and (per_request["times"] == 1).all()
    assert (per_request["queries"] == 1).all()
    assert per_request["positions"].to_list() == [list(range(1, TINY.slate_size + 1))] * per_request.height
    requests = imp.filter(pl.col("position") == 1)
    assert requests["request_id"].sort().to_list() == list(range(1, requests.height + 1))
    by_time = requests.sort("request_id")["timestamp"]
    assert (by_time.diff().drop_nulls() >= 0).all()  # request ids increase with time
    gaps = requests.select(pl.col("timestamp").diff().over("user_id")).to_series().drop_nulls()
    assert (gaps > 0).all()  # strictly increasing within a user's requests


def test_same_seed_same_world_different_seed_differs(tiny):
    again = simulate(TINY)
    assert again.impressions.equals(tiny.impressions)
    assert again.users.equals(tiny.users) and again.items.equals(tiny.items)
    assert np.array_equal(again.user_interest, tiny.user_interest)
    other = simulate(SimConfig(users=60, items=80, impressions=3_000, seed=4))
    assert not other.impressions.equals(tiny.impressions)
    assert not np.array_equal(other.user_interest, tiny.user_interest)


def test_position_bias_visible(medium):
    imp = medium.impressions
    s = MEDIUM.slate_size
    exam = np.arange(1, s + 1, dtype=np.float64) ** -MEDIUM.position_bias
    ratio = (imp["true_p_click"] / imp["true_p_relevance"]).to_numpy()
    np.testing.assert_allclose(ratio, exam[imp["position"].to_numpy() - 1], rtol=1e-5)
    stats = imp.group_by("position").agg(ctr=pl.col("click").mean(), p=pl.col("true_p_click").mean(),
                                         n=pl.len()).sort("position")
    p, ctr, n = stats["p"].to_numpy(), stats["ctr"].to_numpy(), stats["n"].to_numpy()
    assert (np.diff(p) < 0).all()
    assert ctr[0] > ctr[s // 2] > ctr[-1]
    se = np.sqrt(p * (1 - p) / n)
    assert (np.abs(ctr - p) < 5 * se + 1e-3).all()  # observed clicks follow the true probability


def test_clickbait_clicked_more_but_liked_less(medium):
    stats = with_items(medium).group_by("is_clickbait").agg(
        ctr=pl.col("click").mean(), p_rel=pl.col("true_p_relevance").mean(),
        like=pl.col("like").filter(pl.col("click") == 1).mean(), p_like=pl.col("true_p_like").mean())
    bait = stats.filter(pl.col("is_clickbait")).row(0, named=True)
    honest = stats.filter(~pl.col("is_clickbait")).row(0, named=True)
    assert bait["ctr"] > honest["ctr"] and bait["p_rel"] > honest["p_rel"]
    assert bait["like"] < honest["like"] and bait["p_like"] < honest["p_like"]


def test_rates_in_the_intended_range(medium):
    imp = medium.impressions
    assert 0.05 <= imp["click"].mean() <= 0.15
    assert 0.3 <= imp.filter(pl.col("click") == 1)["like"].mean() <= 0.6


def test_labels_consistent_with_clicks(medium):
    imp = medium.impressions
    unclicked = imp.filter(pl.col("click") == 0)
    assert (unclicked["like"] == 0).all() and (unclicked["watch_fraction"] == 0).all()
    assert unclicked["rating"].null_count() == unclicked.height
    clicked = imp.filter(pl.col("click") == 1)
    assert clicked["rating"].null_count() == 0
    ratings = clicked["rating"].to_numpy()
    assert np.isin(ratings, [1, 2, 3, 4, 5]).all()
    assert clicked["watch_fraction"].is_between(0, 1).all()
    assert set(imp["click"].unique()) <= {0, 1} and set(imp["like"].unique()) <= {0, 1}
    # liked videos are rated higher than the rest
    liked = clicked.group_by("like").agg(pl.col("rating").mean()).sort("like")["rating"]
    assert liked[1] > liked[0]
    for col in ("true_p_click", "true_p_relevance", "true_p_like", "true_p_like_uncond"):
        assert imp[col].is_between(0, 1).all(), col
    assert (imp["true_p_click"] <= imp["true_p_relevance"]).all()
    np.testing.assert_allclose(imp["true_p_like_uncond"].to_numpy(),
                               (imp["true_p_click"] * imp["true_p_like"]).to_numpy(), rtol=1e-5)


def test_truth_follows_the_exported_latents(medium):
    rows = with_items(medium)
    users, topics = rows["user_id"].to_numpy() - 1, rows["topic"].to_numpy()
    aff = medium.user_interest[users, topics].astype(np.float64)
    logit = synthetic.B0 + synthetic.B1 * aff + synthetic.B2 * rows["quality"].to_numpy()
    np.testing.assert_allclose(rows["true_p_like"].to_numpy(), 1 / (1 + np.exp(-logit)), atol=1e-5)


def test_slates_distinct_and_without_the_query(medium):
    imp = medium.impressions
    distinct = imp.group_by("request_id").agg(pl.col("item_id").n_unique())["item_id"]
    assert (distinct == MEDIUM.slate_size).all()
    assert imp.filter(pl.col("item_id") == pl.col("query_item_id")).height == 0


def test_smallest_catalogue_shows_every_other_video():
    world = simulate(SimConfig(users=10, items=6, slate_size=5, topics=3, impressions=400, seed=1))
    slates = world.impressions.group_by("request_id").agg(pl.col("item_id").sort(), pl.first("query_item_id"))
    with_query = slates.filter(pl.col("query_item_id") > 0)
    assert with_query.height > 0
    for items, query in with_query.select("item_id", "query_item_id").iter_rows():
        assert items == [i for i in range(1, 7) if i != query]


def test_query_is_the_last_clicked_video(medium):
    imp = medium.impressions
    assert imp["query_item_id"].is_between(0, MEDIUM.items).all()
    # per request: the video clicked at the lowest slot (watched last), then forward-filled
    requests = imp.group_by("request_id", maintain_order=True).agg(
        pl.first("user_id"), pl.first("query_item_id"),
        last=pl.col("item_id").filter(pl.col("click") == 1).last())
    requests = requests.with_columns(
        rank=pl.int_range(pl.len()).over("user_id"),
        expected=pl.col("last").shift(1).forward_fill().over("user_id"))
    first = requests.filter(pl.col("rank") == 0)
    assert (first["query_item_id"] == 0).all()
    later = requests.filter(pl.col("rank") > 0)
    assert (later["query_item_id"] > 0).all()
    known = later.filter(pl.col("expected").is_not_null())
    assert known.height > 0 and (known["query_item_id"] == known["expected"]).all()


def test_new_user_fraction_and_late_join():
    world = simulate(SimConfig(users=1_000, items=50, impressions=2_000, new_user_frac=0.3, seed=2))
    assert abs(world.users["is_new"].mean() - 0.3) <= 0.001
    first = world.impressions.group_by("user_id").agg(pl.col("timestamp").min())
    first = first.join(world.users, on="user_id")
    new, established = first.filter(pl.col("is_new")), first.filter(~pl.col("is_new"))
    assert new["timestamp"].min() > established["timestamp"].max()  # new users join after the others


def test_user_features_informative_but_not_revealing():
    world = simulate(SimConfig(users=3_000, items=50, impressions=500, seed=5))
    interest = world.user_interest.astype(np.float64)
    segment = world.users.select(pl.concat_str("age_bucket", "gender", "region")).to_series()
    codes = segment.rank("dense").to_numpy() - 1
    counts = np.bincount(codes)
    means = np.stack([np.bincount(codes, weights=col) / counts for col in interest.T], axis=1)
    explained = 1 - ((interest - means[codes]) ** 2).sum() / ((interest - interest.mean(0)) ** 2).sum()
    assert 0.2 < explained < 0.9


@pytest.mark.parametrize(("field", "kwargs", "value"), [
    ("users", {"users": 0}, "0"),
    ("items", {"items": 10, "slate_size": 10}, "10"),
    ("impressions", {"impressions": 15}, "15"),
    ("impressions", {"impressions": 0}, "0"),
    ("slate_size", {"slate_size": 0}, "0"),
    ("topics", {"topics": 0}, "0"),
    ("seed", {"seed": -1}, "-1"),
    ("users", {"users": 2.5}, "2.5"),
    ("users", {"users": True}, "True"),
    ("new_user_frac", {"new_user_frac": 1.5}, "1.5"),
    ("clickbait_frac", {"clickbait_frac": -0.1}, "-0.1"),
    ("related_frac", {"related_frac": 0.8, "popular_frac": 0.5}, "0.8"),
    ("position_bias", {"position_bias": math.nan}, "nan"),
    ("position_bias", {"position_bias": -1.0}, "-1.0"),
    ("mean_gap_s", {"mean_gap_s": 0.0}, "0.0"),
])
def test_invalid_config_names_the_field(field, kwargs, value):
    with pytest.raises(ConfigError) as err:
        SimConfig(**kwargs)
    assert f"SimConfig.{field}" in str(err.value) and value in str(err.value)


@st.composite
def small_configs(draw) -> SimConfig:
    slate = draw(st.integers(1, 5))
    return SimConfig(
        users=draw(st.integers(1, 30)),
        items=draw(st.integers(slate + 1, 50)),
        impressions=slate * draw(st.integers(1, 40)),
        slate_size=slate,
        topics=draw(st.integers(1, 8)),
        seed=draw(st.integers(0, 2**32)),
        new_user_frac=draw(st.floats(0, 1)),
        clickbait_frac=draw(st.floats(0, 1)),
        position_bias=draw(st.floats(0, 3)),
        popularity_exponent=draw(st.floats(0, 3)),
    )


@settings(max_examples=40, deadline=None)
@given(cfg=small_configs())
def test_small_worlds_have_valid_shapes_and_ranges(cfg):
    world = simulate(cfg)
    imp, s = world.impressions, cfg.slate_size
    assert imp.height == cfg.impressions and dict(imp.schema) == IMPRESSION_SCHEMA
    assert world.users.height == cfg.users and world.items.height == cfg.items
    assert world.user_interest.shape == (cfg.users, cfg.topics)
    assert imp["user_id"].is_between(1, cfg.users).all()
    assert imp["item_id"].is_between(1, cfg.items).all()
    assert imp["query_item_id"].is_between(0, cfg.items).all()
    assert imp["position"].is_between(1, s).all()
    assert imp["click"].is_in([0, 1]).all() and (imp["like"] <= imp["click"]).all()
    assert imp["watch_fraction"].is_between(0, 1).all()
    assert imp.filter(pl.col("click") == 1)["rating"].is_between(1, 5).all()
    for col in ("true_p_click", "true_p_relevance", "true_p_like", "true_p_like_uncond"):
        assert imp[col].is_between(0, 1).all()
    slates = imp.group_by("request_id").agg(pl.col("item_id").n_unique(), pl.len())
    assert (slates["item_id"] == s).all() and (slates["len"] == s).all()
    assert imp.filter(pl.col("item_id") == pl.col("query_item_id")).height == 0
    assert world.users["is_new"].sum() == round(cfg.new_user_frac * cfg.users)
