"""The contract every cold-start adapter keeps: the ranker never changes, K = 0 is the ranker,
per-task [N] outputs, S = 1 and missing labels work, bad support sets raise clear errors, a
fitted adapter round-trips through its state_dict (and save / load_adapter), unknown names and
options are ConfigErrors."""

from __future__ import annotations

import pytest
import torch
from conftest import ADAPTER_NAMES, OPTIONS

from recsys.errors import ConfigError, UnknownIdError
from recsys.meta.registry import ADAPTERS, build_adapter, load_adapter


def _ranker_scores(world, x):
    with torch.no_grad():
        return world.ranker(x)


def test_registry_names_every_adapter():
    assert set(ADAPTERS) == {"none", "finetune", "maml", "fomaml", "anil", "metasgd", "proto", "blackbox",
                             "blackbox_maml"}
    for name, cls in ADAPTERS.items():
        assert cls.name == name


@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_fit_and_adapt_never_change_the_ranker(meta_world, fitted, name):
    adapter = fitted[name]
    sx, sy, qx = meta_world.support(k=3)
    adapter.adapt(sx, sy)(qx)
    for k, v in meta_world.ranker.state_dict().items():
        assert torch.equal(v, meta_world.ranker_state[k]), (name, k)
    assert not any(k.startswith("ranker.") for k in adapter.state_dict()), "the ranker is not the adapter's state"


@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_empty_support_gives_exactly_the_ranker(meta_world, fitted, name):
    sx, sy, qx = meta_world.support(k=0)
    assert sx.shape[0] == 0
    got = fitted[name].adapt(sx, sy)(qx)
    want = _ranker_scores(meta_world, qx)
    assert list(got) == list(meta_world.ranker.tasks)
    for t in want:
        assert torch.equal(got[t], want[t]), (name, t)


@pytest.mark.parametrize("name", ADAPTER_NAMES)
@pytest.mark.parametrize("k", [1, 3])
def test_outputs_are_per_task_vectors(meta_world, fitted, name, k):
    sx, sy, qx = meta_world.support(k=k)
    out = fitted[name].adapt(sx, sy)(qx)
    assert tuple(out) == tuple(meta_world.ranker.tasks)
    for t, v in out.items():
        assert v.shape == (len(qx),) and torch.isfinite(v).all(), (name, t)
    one = fitted[name].adapt(sx, sy)(qx[:1])  # a single candidate
    assert all(v.shape == (1,) for v in one.values())


@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_one_support_row_and_missing_labels(meta_world, fitted, name):
    sx, sy, qx = meta_world.support(k=3)
    out = fitted[name].adapt(sx[:1], sy[:1])(qx)  # S = 1
    assert all(torch.isfinite(v).all() for v in out.values())
    partly = sy.clone()
    partly[::2, 1] = float("nan")   # like missing on every other row
    partly[:, 2] = float("nan")     # no rating at all
    out = fitted[name].adapt(sx, partly)(qx)
    assert all(torch.isfinite(v).all() for v in out.values())
    nothing = torch.full_like(sy, float("nan"))  # no label at all: still finite
    out = fitted[name].adapt(sx, nothing)(qx)
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_invalid_support_sets_raise_clear_errors(meta_world, fitted, name):
    adapter = fitted[name]
    sx, sy, _ = meta_world.support(k=2)
    with pytest.raises(ValueError, match=r"support_x must have shape \[S, \d+\]"):
        adapter.adapt(sx[:, :-1], sy)
    with pytest.raises(ValueError, match=r"support_y must have shape \[S, 3\]"):
        adapter.adapt(sx, sy[:, :2])
    with pytest.raises(ValueError, match="rows"):
        adapter.adapt(sx, sy[:1])
    bad = sx.float()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="integer ids.*non-finite"):
        adapter.adapt(bad, sy)
    unknown = sx.clone()
    unknown[0, meta_world.schema.slice("f_item_id")] = 10_000
    with pytest.raises(UnknownIdError, match="f_item_id.*10000"):
        adapter.adapt(unknown, sy)
    inf = sy.clone()
    inf[0, 2] = float("inf")
    with pytest.raises(ValueError, match="infinite label for task 'rating'"):
        adapter.adapt(sx, inf)
    two = sy.clone()
    two[0, 0] = 2.0
    with pytest.raises(ValueError, match="binary task 'click'"):
        adapter.adapt(sx, two)


@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_state_dict_round_trip_gives_identical_scores(meta_world, fitted, name, tmp_path):
    adapter = fitted[name]
    sx, sy, qx = meta_world.support(k=3)
    want = adapter.adapt(sx, sy)(qx)
    fresh = build_adapter(name, meta_world.ranker, esmm=meta_world.esmm, **OPTIONS[name])
    fresh.load_state_dict(adapter.state_dict())
    got = fresh.adapt(sx, sy)(qx)
    for t in want:
        assert torch.equal(got[t], want[t]), (name, t)
    adapter.save(tmp_path / name)
    loaded = load_adapter(tmp_path / name, meta_world.ranker)
    assert type(loaded) is type(adapter) and loaded.esmm == adapter.esmm
    again = loaded.adapt(sx, sy)(qx)
    for t in want:
        assert torch.equal(again[t], want[t]), (name, t)


def test_unknown_adapter_and_options_are_config_errors(meta_world):
    r = meta_world.ranker
    with pytest.raises(ConfigError, match="unknown adapter 'mamll'.*known adapters: none, finetune"):
        build_adapter("mamll", r)
    for name in ADAPTER_NAMES:
        with pytest.raises(ConfigError, match=r"unknown option\(s\) \['bogus'\]"):
            build_adapter(name, r, bogus=1)
    with pytest.raises(ConfigError, match="unknown adaptation scope"):
        build_adapter("maml", r, scope="user+towerz")
    with pytest.raises(ConfigError, match="unknown adaptation scope"):
        build_adapter("finetune", r, scopes=("nope",))
    with pytest.raises(ConfigError, match="optimizers"):
        build_adapter("finetune", r, optimizers=("rmsprop",))
    with pytest.raises(ConfigError, match="outputs"):
        build_adapter("blackbox", r, outputs="user+film")
    with pytest.raises(ConfigError, match="lr_grid"):
        build_adapter("metasgd", r, lr_grid=(0.1, -1.0))
    with pytest.raises(ConfigError, match="patience"):
        build_adapter("maml", r, patience=0)
    with pytest.raises(ConfigError, match="esmm=True needs"):
        build_adapter("none", build_single_task(meta_world), esmm=True)


def build_single_task(world):
    from recsys.models.registry import build_model

    return build_model("mmoe", world.schema, ("click",), dim=4, num_experts=2, expert_hidden=(8,), tower_hidden=(4,))


def test_load_adapter_errors(meta_world, tmp_path):
    from recsys.errors import CheckpointError

    with pytest.raises(CheckpointError, match="adapter.json not found"):
        load_adapter(tmp_path, meta_world.ranker)

