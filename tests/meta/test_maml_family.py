"""The MAML family, fine-tuning and the black box: the inner loop fits the support set, learned
rates are positive and saved, non-finite adaptation falls back (warned, counted), meta-training
resumes exactly, the batched validation path equals per-user adaptation, scopes resolve."""

from __future__ import annotations

import pytest
import torch
from conftest import OPTIONS

from recsys.errors import CheckpointError, ConfigError
from recsys.meta import inner_loop as inner_loop_module
from recsys.meta.functional import FunctionalRanker, episode_loss
from recsys.meta.registry import build_adapter
from recsys.meta.selection import EvalEpisodes, adapter_predictions

GRADIENT = ("maml", "fomaml", "anil", "metasgd")


@pytest.mark.parametrize("name", GRADIENT)
def test_inner_loop_reduces_the_support_loss_on_average(meta_world, fitted, name):
    adapter = fitted[name]
    before, after = [], []
    for user in range(len(meta_world.test)):
        sx, sy, _ = meta_world.support(k=3, user=user)
        e = adapter.fr.embed(sx)
        mask = torch.ones(len(sx), dtype=torch.bool)
        with torch.no_grad():
            init = adapter.initial_params()
            adapted = adapter.adapt_params(e, sy, mask)
            before.append(float(episode_loss(adapter.fr.scores(init, e), sy, mask, adapter.tasks, esmm=True)))
            after.append(float(episode_loss(adapter.fr.scores(adapted, e), sy, mask, adapter.tasks, esmm=True)))
    assert sum(after) / len(after) < sum(before) / len(before)


def test_metasgd_rates_are_positive_per_element_learnable_and_saved(meta_world, fitted):
    adapter = fitted["metasgd"]
    state = adapter.state_dict()
    for n, rate in adapter.inner_lrs().items():
        key = "log_lr." + n.replace(".", "__")
        assert key in state and state[key].shape == adapter.initial_params()[n].shape
        assert (rate > 0).all() and torch.isfinite(rate).all()
    batch = meta_world.train.sample(4, 2, generator=torch.Generator().manual_seed(0), max_query=10)
    adapter._train_cols = adapter.task_columns(meta_world.train)
    loss, bad = adapter._outer_loss(batch)
    grads = torch.autograd.grad(loss, list(adapter.log_lr.values()))
    assert bad == 0 and any(g.abs().sum() > 0 for g in grads)


def test_maml_meta_gradient_is_second_order(meta_world, fitted):
    grads = {}
    for first_order in (False, True):
        a = build_adapter("maml", meta_world.ranker, esmm=True, **{**OPTIONS["maml"], "first_order": first_order})
        a.load_state_dict(fitted["maml"].state_dict())
        a._train_cols = a.task_columns(meta_world.train)
        batch = meta_world.train.sample(4, 2, generator=torch.Generator().manual_seed(1), max_query=10)
        loss, _ = a._outer_loss(batch)
        grads[first_order] = torch.autograd.grad(loss, a.init["user"])[0]
    assert not torch.allclose(grads[False], grads[True])


@pytest.mark.parametrize("name", (*GRADIENT, "finetune"))
def test_nan_inner_gradient_falls_back_with_a_warning(meta_world, fitted, name, monkeypatch):
    adapter = fitted[name]
    sx, sy, qx = meta_world.support(k=3)
    monkeypatch.setattr(inner_loop_module, "clip_grads",
                        lambda grads, max_norm: {k: torch.full_like(g, float("nan")) for k, g in grads.items()})
    before = adapter.fallbacks
    with pytest.warns(RuntimeWarning, match="non-finite.*unadapted ranker"):
        out = adapter.adapt(sx, sy)(qx)
    assert adapter.fallbacks == before + 1
    with torch.no_grad():
        want = meta_world.ranker(qx)
    assert all(torch.equal(out[t], want[t]) for t in want)


def test_nan_in_meta_training_leaves_users_out_and_counts_them(meta_world, fitted, monkeypatch):
    adapter = fitted["maml"]
    adapter._train_cols = adapter.task_columns(meta_world.train)
    batch = meta_world.train.sample(4, 2, generator=torch.Generator().manual_seed(0), max_query=10)
    monkeypatch.setattr(inner_loop_module, "clip_grads",
                        lambda grads, max_norm: {k: torch.full_like(g, float("nan")) for k, g in grads.items()})
    loss, bad = adapter._outer_loss(batch)
    assert bad == 4 and torch.isfinite(loss)


def test_blackbox_non_finite_output_falls_back(meta_world, fitted):
    bb = build_adapter("blackbox", meta_world.ranker, esmm=True, **OPTIONS["blackbox"])
    bb.load_state_dict(fitted["blackbox"].state_dict())
    with torch.no_grad():
        bb.encoder.out.bias.fill_(float("nan"))
    sx, sy, qx = meta_world.support(k=2)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        out = bb.adapt(sx, sy)(qx)
    assert bb.fallbacks == 1 and torch.equal(out["like"], meta_world.ranker(qx)["like"])


@pytest.mark.parametrize("name", ("maml", "blackbox"))
def test_meta_training_resumed_from_its_checkpoint_equals_an_uninterrupted_run(meta_world, name, tmp_path):
    def fresh():
        return build_adapter(name, meta_world.ranker, esmm=True, **OPTIONS[name])

    quiet = dict(log=lambda m: None)
    full = fresh().fit(meta_world.train, meta_world.valid, checkpoint=tmp_path / "full.pt", **quiet)
    cut = fresh().fit(meta_world.train, meta_world.valid, checkpoint=tmp_path / "cut.pt", stop_after=4, **quiet)
    assert not bool(cut.fitted) and (tmp_path / "cut.pt").exists()
    with pytest.raises(CheckpointError, match="resume=True"):
        fresh().fit(meta_world.train, meta_world.valid, checkpoint=tmp_path / "cut.pt", **quiet)
    resumed = fresh().fit(meta_world.train, meta_world.valid, checkpoint=tmp_path / "cut.pt", resume=True, **quiet)
    assert bool(resumed.fitted) and bool(full.fitted)
    want, got = full.state_dict(), resumed.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    other = build_adapter(name, meta_world.ranker, esmm=True, **{**OPTIONS[name], "meta_lr": 0.5})
    with pytest.raises(CheckpointError, match="other options"):
        other.fit(meta_world.train, meta_world.valid, checkpoint=tmp_path / "cut.pt", resume=True, **quiet)


@pytest.mark.parametrize("name", GRADIENT)
def test_batched_validation_equals_per_user_adaptation(meta_world, fitted, name):
    adapter = fitted[name]
    episodes = EvalEpisodes(meta_world.valid, adapter.tasks, query_after=2)
    batched = adapter.batch_predictions(episodes, 2)
    single = adapter_predictions(adapter.adapt, episodes, 2)
    for t in adapter.tasks:
        torch.testing.assert_close(batched[t], single[t], rtol=1e-4, atol=1e-4)


def test_finetune_selection_is_a_grid_point_kept_in_the_state_dict(fitted):
    ft = fitted["finetune"]
    point = ft.selected()
    o = OPTIONS["finetune"]
    assert point["scope"] in o["scopes"] and point["optimizer"] in o["optimizers"]
    assert point["lr"] in o["lrs"] and point["steps"] in o["steps"]
    assert point["reduction"] in o["reductions"]
    assert {"scope_index", "optimizer_index", "reduction_index", "lr", "n_steps", "fitted"} <= set(ft.state_dict())
    assert len(ft.grid_) == 2 * 3 * 2 * 2  # scopes x (sgd mean, sgd sum, adam) x lrs x steps


def test_finetune_selects_on_the_mean_over_support_sizes(meta_world):
    import math

    runs = {}
    for ks in ((1,), (2,), (1, 2)):
        options = {**OPTIONS["finetune"], "valid_ks": ks}
        ft = build_adapter("finetune", meta_world.ranker, esmm=True, **options)
        runs[ks] = ft.fit(meta_world.train, meta_world.valid, log=lambda m: None)
    for a, b, mean in zip(runs[(1,)].grid_, runs[(2,)].grid_, runs[(1, 2)].grid_):
        assert a[:5] == b[:5] == mean[:5] and math.isclose(mean[5], (a[5] + b[5]) / 2, rel_tol=1e-9)
    best = max(runs[(1, 2)].grid_, key=lambda g: g[5])
    point = runs[(1, 2)].selected()
    assert (point["scope"], point["optimizer"], point["reduction"], point["lr"], point["steps"]) == best[:5]
    with pytest.raises(ConfigError, match="valid_ks"):
        build_adapter("finetune", meta_world.ranker, esmm=True, **{**OPTIONS["finetune"], "valid_ks": (0,)})


def test_scopes_and_the_functional_ranker(meta_world):
    fr = FunctionalRanker(meta_world.ranker)
    assert fr.scope_names("bias") == ("output_bias",)
    assert fr.scope_names("user") == ("output_bias", "user")
    assert set(fr.scope_names("last")) == {"output_bias", "towers.weights.1", "towers.biases.1"}
    assert {"towers.weights.0", "towers.weights.1"} <= set(fr.scope_names("head"))
    every = fr.scope_names("all")
    assert "user" in every and "experts.weights.0" in every and not any(n.startswith("embedding") for n in every)
    _, _, qx = meta_world.support(k=1)
    with torch.no_grad():
        want = meta_world.ranker(qx)  # new users' rows hold the OOV user id already
        got = fr.scores(fr.initial(fr.scope_names("all")), fr.embed(qx))
    for j, t in enumerate(meta_world.ranker.tasks):
        torch.testing.assert_close(got[j], want[t], rtol=1e-5, atol=1e-5)


def test_blackbox_maml_refines_the_encoder_output_with_learned_positive_rates(meta_world, fitted):
    bb = fitted["blackbox_maml"]
    state = bb.state_dict()
    assert {"log_lr.user", "log_lr.output_bias"} <= set(state)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    sx, sy, _ = meta_world.support(k=3)
    e = bb.fr.embed(sx)
    mask = torch.ones(len(sx), dtype=torch.bool)
    with torch.no_grad():
        du, b, q = (v[0] for v in bb._encode(e[None], sy[None], mask[None]))
        refined = bb.personalise(e, sy, mask, du, b, q)
        bb.inner_steps = 0
        try:
            start = bb.personalise(e, sy, mask, du, b, q)
        finally:
            bb.inner_steps = 1
    assert not torch.equal(refined["user"], start["user"])
