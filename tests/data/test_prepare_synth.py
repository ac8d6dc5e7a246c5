"""The simulator through the same prepare pipeline as MovieLens."""

from __future__ import annotations

import polars as pl
import torch

from recsys.data.episodes import EpisodeSampler
from recsys.data.prepare import prepare_synthetic
from recsys.data.sources.synthetic import SimConfig, simulate
from recsys.data.tensors import load_split


def test_synthetic_prepared_layout(tmp_path):
    world = simulate(SimConfig(users=60, items=40, impressions=6000, seed=0))
    out = tmp_path / "synth"
    summary = prepare_synthetic(world, out)
    train = load_split(out, "train")
    assert train.schema.tasks == ("click", "like", "rating", "watch")
    assert train.schema.num_positions == 10 and train.position is not None
    assert int(train.position.min()) >= 1 and int(train.position.max()) <= 10
    assert {"true_p_click", "true_p_like", "true_p_relevance"} <= set(train.truth)
    new_users = set(world.users.filter(pl.col("is_new"))["user_id"].to_list())
    warm_rows = pl.concat([pl.read_parquet(out / f"{s}.parquet") for s in ("train", "valid", "test")])
    assert not new_users & set(warm_rows["user_id"].to_list())
    assert set(pl.read_parquet(out / "coldstart.parquet")["user_id"].to_list()) <= new_users
    # one event = one slate: all rows of an event share timestamp and query item
    per_event = warm_rows.group_by("user_id", "event").agg(pl.col("timestamp").n_unique(), pl.col("query_item_id").n_unique())
    assert (per_event["timestamp"] == 1).all() and (per_event["query_item_id"] == 1).all()
    cold = EpisodeSampler(load_split(out, "coldstart")).batch(1)
    assert cold.support_mask.sum(1).eq(10).all()  # K = 1 event = one slate of 10
    assert summary["users"]["cold_start"] == len(set(pl.read_parquet(out / "coldstart.parquet")["user_id"]))
    click = train.y[:, 0]
    assert torch.isnan(train.y[:, 2][click == 0]).all()
