"""Streamed splits: every row once per epoch in a seeded order, exact start at any batch, reads
bounded by the window, and training from the stream as good as training in memory."""

from __future__ import annotations

import pytest
import torch

import recsys.data.stream as S
from recsys.config import load_config
from recsys.data.prepare import prepare_synthetic
from recsys.data.sources.synthetic import SimConfig, simulate
from recsys.data.stream import StreamedSplit
from recsys.data.tensors import TensorData, load_split
from recsys.errors import ConfigError
from recsys.evaluate import validation_metrics
from recsys.models.registry import build_model
from recsys.train import train


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A prepared simulator data set: about 13,000 training rows (one slate = 10 rows)."""
    out = tmp_path_factory.mktemp("stream") / "synth"
    prepare_synthetic(simulate(SimConfig(users=100, items=60, impressions=20_000, seed=3)), out)
    return out


def _keys(data: TensorData) -> torch.Tensor:
    """A row's identity: (user, event, item) is unique (a slate shows an item once)."""
    return (data.user * 10_000 + data.event) * 10_000 + data.item


@pytest.mark.parametrize(("window", "batch_size"), [(1000, 256), (700, 1024), (97, 128), (5000, 64)])
def test_every_row_once_per_epoch(synth, window, batch_size):
    split = StreamedSplit(synth, "train", window=window)
    full = load_split(synth, "train")
    batches = list(split.batches(batch_size, seed=0, epoch=0))
    assert len(split) == len(full) and len(batches) == split.num_batches(batch_size)
    assert all(len(b) == batch_size for b in batches[:-1]) and 0 < len(batches[-1]) <= batch_size
    seen = torch.cat([_keys(b) for b in batches])
    assert torch.equal(seen.sort().values, _keys(full).sort().values)
    # rows travel whole: x, y and the position of a key are those of the file
    first = batches[0]
    where = {int(k): i for i, k in enumerate(_keys(full))}
    rows = torch.tensor([where[int(k)] for k in _keys(first)])
    assert torch.equal(first.x, full.x[rows]) and torch.equal(first.position, full.position[rows])
    assert torch.equal(first.y.nan_to_num(-1), full.y[rows].nan_to_num(-1))


def test_order_is_a_function_of_seed_and_epoch(synth):
    split = StreamedSplit(synth, "train", window=500)

    def order(seed, epoch):
        return torch.cat([_keys(b) for b in split.batches(256, seed=seed, epoch=epoch)])

    assert torch.equal(order(0, 0), order(0, 0))
    assert not torch.equal(order(0, 0), order(0, 1))
    assert not torch.equal(order(0, 0), order(1, 0))
    # rows mix across windows: a batch draws from more than one region of the file
    first = next(split.batches(256, seed=0, epoch=0))
    rows = {int(k): i for i, k in enumerate(_keys(load_split(synth, "train")))}
    windows = {rows[int(k)] // 500 for k in _keys(first)}
    assert len(windows) > 1


@pytest.mark.parametrize("window", [300, 1000])
def test_start_at_batch_b_is_the_tail_of_a_full_pass(synth, window):
    split = StreamedSplit(synth, "train", window=window)
    full = [_keys(b) for b in split.batches(200, seed=5, epoch=2)]
    for b in (0, 1, 7, 8, 15, len(full) - 1, len(full)):
        tail = [_keys(x) for x in split.batches(200, seed=5, epoch=2, start=b)]
        assert len(tail) == len(full) - b
        assert all(torch.equal(x, y) for x, y in zip(tail, full[b:])), b
    with pytest.raises(ValueError, match="start"):
        next(split.batches(200, seed=5, epoch=2, start=len(full) + 1))


def test_reads_never_exceed_the_window(synth, monkeypatch):
    reads, held = [], []
    real_read, real_cat = S.read_rows, TensorData.cat

    def spy_read(path, offset, length):
        frame = real_read(path, offset, length)
        reads.append((offset, frame.height))
        return frame

    def spy_cat(parts):
        out = real_cat(parts)
        held.append(len(out))
        return out

    monkeypatch.setattr(S, "read_rows", spy_read)
    monkeypatch.setattr(TensorData, "cat", staticmethod(spy_cat))
    window = 400
    split = StreamedSplit(synth, "train", window=window, buffer=3)
    n_batches = sum(1 for _ in split.batches(128, seed=0, epoch=0))
    assert all(rows <= window for _, rows in reads)
    assert max(held) <= 3 * window  # a block: buffer windows, never more
    assert sorted(offset for offset, _ in reads) == list(range(0, len(split), window))  # each window once
    assert sum(rows for _, rows in reads) == len(split)

    # resuming late in the epoch reads the block that holds its first row and the ones after it
    reads.clear()
    sum(1 for _ in split.batches(128, seed=0, epoch=0, start=n_batches - 2))
    assert 0 < len(reads) <= 3


def test_label_means_and_windowed_validation_match_in_memory(synth):
    tasks = ("click", "like", "rating", "watch")
    streamed, full = StreamedSplit(synth, "valid", window=300), load_split(synth, "valid")
    for esmm in (False, True):
        got, want = streamed.label_means(tasks, esmm=esmm), full.label_means(tasks, esmm=esmm)
        assert got.keys() == want.keys() and all(got[t] == pytest.approx(want[t], rel=1e-5) for t in tasks)
    torch.manual_seed(0)
    model = build_model("mmoe", full.schema, tasks)
    a, b = validation_metrics(model, streamed, tasks), validation_metrics(model, full, tasks)
    assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-6) for k in a)


def test_bad_window_is_a_config_error(synth):
    with pytest.raises(ConfigError, match="window"):
        StreamedSplit(synth, "train", window=0)
    with pytest.raises(ConfigError, match="stream_window"):
        load_config("default", {"stream_window": -1})


def test_training_from_the_stream_matches_in_memory_auc(synth, tmp_path):
    base = {"dataset": str(synth), "model": "mmoe", "weighting": "equal", "epochs": 2, "batch_size": 256,
            "lr": 5e-3, "diagnostics_every": 0, "checkpoint_every": 1000, "device": "cpu", "threads": 1}
    memory = train(load_config("default", base), tmp_path / "memory", log=lambda m: None)
    stream = train(load_config("default", {**base, "stream_window": 800}), tmp_path / "stream", log=lambda m: None)
    assert memory.steps == stream.steps
    # the ranking is learnt (the true p_click scores about 0.88 here), as well as in memory
    assert stream.valid["click_auc"] > 0.65
    assert abs(stream.valid["click_auc"] - memory.valid["click_auc"]) < 0.02
