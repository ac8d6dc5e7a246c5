"""Tensors built once per split, seeded batches, and users-as-tasks episodes."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.episodes import EpisodeSampler
from recsys.data.fields import OOV, PAD, Field, Schema
from recsys.data.tensors import TensorData, batch_indices, load_schema, load_split
from recsys.errors import DataValidationError, UnknownIdError


def test_split_tensors_match_schema(prepared):
    schema = load_schema(prepared)
    data = load_split(prepared, "train")
    assert data.x.shape == (len(data), schema.width) and data.x.dtype == torch.int64
    assert data.y.shape == (len(data), 3) and schema.tasks == ("click", "like", "rating")
    for f in schema.fields:
        cols = data.x[:, schema.slice(f.name)]
        assert cols.shape[1] == f.width and int(cols.min()) >= 0 and int(cols.max()) < f.size
    rating = data.y[:, schema.task_index("rating")]
    click = data.y[:, schema.task_index("click")]
    assert torch.isnan(rating[click == 0]).all() and not torch.isnan(rating[click == 1]).any()
    genres = data.x[:, schema.slice("f_item_genres")]
    assert ((genres > PAD).sum(1) >= 1).all()  # every movie has a genre; the rest is padding


def test_unknown_split_and_missing_dir(prepared, tmp_path):
    with pytest.raises(DataValidationError, match="unknown split"):
        load_split(prepared, "training")
    with pytest.raises(DataValidationError, match="not a prepared data set"):
        load_split(tmp_path / "nope", "train")


def test_out_of_vocabulary_id_in_file_is_caught(prepared):
    schema = load_schema(prepared)
    frame = pl.read_parquet(prepared / "train.parquet").with_columns(pl.lit(10_000).alias("f_user_age"))
    with pytest.raises(DataValidationError, match="f_user_age: id 10000 outside"):
        TensorData.from_frame(frame, schema)


@given(n=st.integers(0, 300), bs=st.integers(1, 64), seed=st.integers(0, 10), epoch=st.integers(0, 3))
@settings(max_examples=60, deadline=None)
def test_batches_are_a_seeded_partition(n, bs, seed, epoch):
    batches = list(batch_indices(n, bs, seed=seed, epoch=epoch))
    flat = torch.cat(batches) if batches else torch.zeros(0, dtype=torch.long)
    assert sorted(flat.tolist()) == list(range(n))
    assert all(len(b) == bs for b in batches[:-1])
    again = list(batch_indices(n, bs, seed=seed, epoch=epoch))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


def test_epochs_shuffle_differently():
    a = torch.cat(list(batch_indices(100, 10, seed=0, epoch=0)))
    b = torch.cat(list(batch_indices(100, 10, seed=0, epoch=1)))
    assert not torch.equal(a, b)


def test_episodes_support_is_first_k_events(prepared):
    data = load_split(prepared, "coldstart")
    sampler = EpisodeSampler(data)
    for k in (0, 1, 3):
        batch = sampler.batch(k)
        assert batch.support_x.shape[0] == len(batch) == batch.query_x.shape[0]
        for u in range(len(batch)):
            s_rows = batch.support_rows[u][batch.support_mask[u]]
            q_rows = batch.query_rows[u][batch.query_mask[u]]
            d = sampler.data
            assert (d.user[s_rows] == batch.users[u]).all() and (d.user[q_rows] == batch.users[u]).all()
            first = int(d.event[d.user == batch.users[u]].min())
            assert (d.event[s_rows] < first + k).all() and (d.event[q_rows] >= first + k).all()
            assert len(s_rows) == 5 * k  # a positive and its 4 negatives per event
            assert len(s_rows) + len(q_rows) == int((d.user == batch.users[u]).sum())
        assert torch.equal(batch.support_x[batch.support_mask], sampler.data.x[batch.support_rows[batch.support_mask]])


def test_episodes_have_the_same_form_on_warm_and_cold_users(prepared):
    cold = EpisodeSampler(load_split(prepared, "coldstart")).batch(2)
    warm = EpisodeSampler(load_split(prepared, "train")).batch(2)
    assert cold.support_x.shape[1:] == warm.support_x.shape[1:]
    assert cold.query_x.shape[2:] == warm.query_x.shape[2:]
    valid = EpisodeSampler(load_split(prepared, "valid")).batch(0)
    assert valid.support_x.shape[1] == 0 and valid.query_mask.any(1).all()


def test_episode_sampling_is_seeded_and_capped(prepared):
    sampler = EpisodeSampler(load_split(prepared, "train"))
    a = sampler.sample(4, 1, generator=torch.Generator().manual_seed(0), max_query=7)
    b = sampler.sample(4, 1, generator=torch.Generator().manual_seed(0), max_query=7)
    assert torch.equal(a.users, b.users) and a.query_x.shape[1] <= 7
    one = sampler.batch(1, torch.tensor([0]))
    assert one.support_x.shape[0] == 1  # batch of one user
    with pytest.raises(UnknownIdError, match="user 99999"):
        sampler.positions(torch.tensor([99999]))


@given(sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4), widths=st.lists(st.integers(1, 3), min_size=4, max_size=4))
@settings(max_examples=30, deadline=None)
def test_schema_slices_tile_x(sizes, widths):
    fields = tuple(Field(name=f"f{i}", side="user", vocab=f"v{i}", size=s + 2, width=w)
                   for i, (s, w) in enumerate(zip(sizes, widths)))
    schema = Schema(fields=fields, tasks=("click",))
    covered = []
    for f in fields:
        sl = schema.slice(f.name)
        covered += list(range(sl.start, sl.stop))
    assert covered == list(range(schema.width))
    assert Schema.from_json(schema.to_json()) == schema


def test_recent_clicks_are_causal_and_ordered():
    from recsys.data.history import recent_clicks

    user = torch.tensor([1, 1, 1, 1, 1, 2, 2])
    event = torch.tensor([0, 0, 1, 2, 3, 0, 1])
    item = torch.tensor([10, 11, 12, 13, 14, 20, 21])
    clicked = torch.tensor([True, False, True, True, False, True, True])
    h = recent_clicks(user, event, item, clicked, length=2)
    assert h.tolist() == [[0, 0], [0, 0], [0, 10], [10, 12], [12, 13], [0, 0], [0, 20]]
