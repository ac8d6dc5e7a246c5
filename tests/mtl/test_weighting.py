"""Contract tests every weighting strategy must pass."""

import copy
import io
import math

import pytest
import torch

from recsys.errors import ConfigError, UnknownIdError
from recsys.mtl import WEIGHTINGS, build_weighting, task_losses
from recsys.mtl.base import task_gradients
from recsys.mtl.pcgrad import pcgrad_project

from mtl_fixtures import TASKS, TinyMTL, make_batch

NAMES = sorted(WEIGHTINGS)


def _setup(name, seed=0, **config):
    model = TinyMTL(seed=seed)
    weighting = build_weighting(name, TASKS, **config)
    opt = torch.optim.Adam(list(model.parameters()) + weighting.extra_parameters(), lr=1e-2)
    return model, weighting, opt


def _step(model, weighting, opt, step, scale=None):
    x, y = make_batch(step)
    losses = task_losses(model(x), y, TASKS)
    if scale is not None:
        losses[scale[0]] = losses[scale[0]] * scale[1]
    opt.zero_grad()
    weights = weighting.backward(losses, model.shared_parameters(), step=step)
    grads_ok = all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    weighting.epoch_end({t: v.item() for t, v in losses.items()})  # one "epoch" per step
    return weights, grads_ok


def test_registry_lists_every_strategy():
    assert set(WEIGHTINGS) == {"static", "equal", "uncertainty", "gradnorm", "dwa", "pcgrad", "mgda", "cagrad"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("task, factor", [("click", 1000.0), ("rating", 1e-3), ("like", 1000.0)])
def test_weights_finite_nonnegative_under_loss_scaling(name, task, factor):
    model, weighting, opt = _setup(name)
    for step in range(6):
        weights, grads_ok = _step(model, weighting, opt, step, scale=(task, factor))
        assert set(weights) == set(TASKS)
        assert all(math.isfinite(w) and w >= 0 for w in weights.values()), weights
        assert grads_ok
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in weighting.extra_parameters())


VARIANTS = [(n, {}) for n in NAMES] + [
    ("mgda", {"grad_params": "last"}),
    ("mgda", {"normalize": "loss+"}),
    ("mgda", {"normalize": "l2", "grad_params": 2}),
    ("gradnorm", {"grad_params": "all", "alpha": 0.5}),
    ("cagrad", {"rescale": 2, "c": 0.9}),
    ("uncertainty", {"init": 1.0}),
]


@pytest.mark.parametrize("name, config", VARIANTS)
def test_gradients_on_shared_and_task_specific_params(name, config):
    model, weighting, _ = _setup(name, **config)
    x, y = make_batch(0)
    losses = task_losses(model(x), y, TASKS)
    shared = model.shared_parameters()
    per_task = task_gradients([losses[t] for t in TASKS], shared)
    heads = {t: torch.autograd.grad(losses[t], list(model.heads[t].parameters()), retain_graph=True) for t in TASKS}
    weights = weighting.backward(losses, shared, step=3)
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    for t in TASKS:  # a head gets its own task's weighted gradient, nothing else
        for p, ref in zip(model.heads[t].parameters(), heads[t]):
            torch.testing.assert_close(p.grad, weights[t] * ref, rtol=1e-5, atol=1e-7)
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    if name == "pcgrad":
        expected = pcgrad_project(per_task, torch.Generator().manual_seed(3)).sum(0)
    else:  # every other strategy's shared gradient is the weighted sum of task gradients
        expected = torch.tensor([weights[t] for t in TASKS]) @ per_task
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_missing_task_gets_zero_weight_and_no_gradient(name):
    model, weighting, _ = _setup(name)
    x, y = make_batch(0)
    y[:, TASKS.index("rating")] = float("nan")
    losses = task_losses(model(x), y, TASKS)
    assert "rating" not in losses
    weights = weighting.backward(losses, model.shared_parameters(), step=0)
    assert weights["rating"] == 0.0
    assert all(p.grad is None for p in model.heads["rating"].parameters())
    assert all(p.grad is not None for p in model.heads["click"].parameters())
    assert weighting.backward({}, model.shared_parameters(), step=1) == dict.fromkeys(TASKS, 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_single_task_present(name):
    model, weighting, _ = _setup(name)
    x, y = make_batch(0)
    losses = {"click": task_losses(model(x), y, TASKS)["click"]}
    weights = weighting.backward(losses, model.shared_parameters(), step=0)
    assert math.isfinite(weights["click"]) and weights["click"] > 0
    assert all(p.grad is not None for p in model.shared_parameters())


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_reproduces_next_weights(name):
    model, weighting, opt = _setup(name)
    for step in range(3):
        _step(model, weighting, opt, step)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "weighting": weighting.state_dict(), "opt": opt.state_dict()}, buf)
    original = [_step(model, weighting, opt, step)[0] for step in range(3, 6)]

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model2, weighting2, opt2 = _setup(name, seed=123)  # different init: state must come from the checkpoint
    model2.load_state_dict(ckpt["model"])
    weighting2.load_state_dict(ckpt["weighting"])
    opt2.load_state_dict(ckpt["opt"])
    resumed = [_step(model2, weighting2, opt2, step)[0] for step in range(3, 6)]
    assert resumed == original
    if name in ("dwa", "gradnorm", "uncertainty"):  # the state that matters is in the checkpoint
        assert len(ckpt["weighting"]) > 0


@pytest.mark.parametrize("name", ["pcgrad", "mgda", "cagrad"])
def test_gradient_strategies_take_one_pass_per_task_on_the_trunk(name):
    model, weighting, _ = _setup(name)
    first = model.trunk[0].weight
    calls = []
    first.register_hook(lambda g: calls.append(1))
    x, y = make_batch(0)
    weighting.backward(task_losses(model(x), y, TASKS), model.shared_parameters(), step=0)
    assert len(calls) == len(TASKS)  # per-task gradients only; the head backward is pruned


@pytest.mark.parametrize("name", ["equal", "static", "dwa", "uncertainty", "gradnorm"])
def test_loss_weighting_strategies_take_one_backward_on_the_trunk(name):
    model, weighting, _ = _setup(name)
    first = model.trunk[0].weight
    calls = []
    first.register_hook(lambda g: calls.append(1))
    x, y = make_batch(0)
    weighting.backward(task_losses(model(x), y, TASKS), model.shared_parameters(), step=0)
    assert len(calls) == 1  # GradNorm measures on the last shared layer only


def test_registry_errors():
    with pytest.raises(ConfigError, match="unknown weighting 'nope'.*uncertainty.*cagrad"):
        build_weighting("nope", TASKS)
    with pytest.raises(ConfigError, match="'tempreature'"):
        build_weighting("dwa", TASKS, tempreature=2.0)
    with pytest.raises(ConfigError, match="unknown task 'dwell'"):
        build_weighting("equal", ("click", "dwell"))
    with pytest.raises(ConfigError, match="duplicate"):
        build_weighting("equal", ("click", "click"))
    with pytest.raises(ConfigError, match="at least one task"):
        build_weighting("equal", ())


@pytest.mark.parametrize(
    "name, config",
    [
        ("static", {"weights": {"click": -1.0}}),
        ("static", {"weights": {"click": float("nan")}}),
        ("static", {"weights": {"click": float("inf")}}),
        ("static", {"weights": {"watch": 1.0}}),
        ("static", {"weights": [1.0]}),
        ("dwa", {"temperature": 0.0}),
        ("gradnorm", {"alpha": -1.0}),
        ("gradnorm", {"grad_params": "first"}),
        ("uncertainty", {"min_log_var": 3.0, "max_log_var": 1.0}),
        ("uncertainty", {"init": float("nan")}),
        ("pcgrad", {"seed": -1}),
        ("mgda", {"normalize": "l1"}),
        ("cagrad", {"c": 1.5}),
        ("cagrad", {"rescale": 3}),
    ],
)
def test_invalid_option_values(name, config):
    with pytest.raises(ConfigError):
        build_weighting(name, TASKS, **config)


def test_unknown_loss_task_and_non_scalar_loss():
    model, weighting, _ = _setup("equal")
    x, y = make_batch(0)
    losses = task_losses(model(x), y, TASKS)
    with pytest.raises(UnknownIdError, match="'watch'"):
        weighting.backward({**losses, "watch": losses["click"]}, model.shared_parameters(), step=0)
    with pytest.raises(ValueError, match="scalar"):
        weighting.backward({"click": model(x)["click"]}, model.shared_parameters(), step=0)


def test_static_weights_are_applied():
    model, weighting, _ = _setup("static", weights={"click": 2.0, "rating": 0.0})
    x, y = make_batch(0)
    weights = weighting.backward(task_losses(model(x), y, TASKS), model.shared_parameters(), step=0)
    assert weights == {"click": 2.0, "like": 1.0, "rating": 0.0}
    assert weighting.state_dict()["weights"].tolist() == [2.0, 1.0, 0.0]


def test_deepcopy_and_device_move_keep_state():
    weighting = build_weighting("dwa", TASKS)
    weighting.epoch_end({"click": 1.0, "like": 2.0, "rating": 3.0})
    clone = copy.deepcopy(weighting).to("cpu")
    assert torch.equal(clone.history.nan_to_num(-1), weighting.history.nan_to_num(-1))
