"""Each strategy against its paper's formula on hand-made gradients."""

import math

import pytest
import torch
from torch import nn

from recsys.mtl import build_weighting
from recsys.mtl.cagrad import cagrad_dual
from recsys.mtl.mgda import min_norm_weights
from recsys.mtl.pcgrad import pcgrad_project


def _linear_losses(vectors, theta):
    """Losses L_t = g_t . theta, whose gradient on theta is exactly g_t."""
    return {t: (g * theta).sum() for t, g in vectors.items()}


def _simplex_grid(T, n=200):
    if T == 2:
        a = torch.linspace(0, 1, n + 1, dtype=torch.float64)
        return torch.stack([a, 1 - a], dim=1)
    a, b = torch.meshgrid(torch.linspace(0, 1, n + 1, dtype=torch.float64),
                          torch.linspace(0, 1, n + 1, dtype=torch.float64), indexing="ij")
    w = torch.stack([a.reshape(-1), b.reshape(-1), 1 - a.reshape(-1) - b.reshape(-1)], dim=1)
    return w[w[:, 2] >= -1e-12].clamp_min(0)


# -- PCGrad --------------------------------------------------------------------------------

def test_pcgrad_removes_the_conflicting_component():
    g = torch.tensor([[1.0, 0.2, 0.0], [-0.8, 1.0, 0.3]])
    assert g[0] @ g[1] < 0
    pc = pcgrad_project(g, torch.Generator().manual_seed(0))
    assert pc[0] @ g[1] >= -1e-6 and pc[1] @ g[0] >= -1e-6
    assert pc[0] @ g[1] == pytest.approx(0.0, abs=1e-6)
    assert pc[0] @ pc[1] >= 0  # two tasks: the projected gradients no longer conflict


def test_pcgrad_leaves_agreeing_gradients_alone_and_skips_zero_gradients():
    g = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]])
    torch.testing.assert_close(pcgrad_project(g, torch.Generator().manual_seed(0)), g)


def test_pcgrad_end_to_end_on_a_shared_vector():
    theta = nn.Parameter(torch.zeros(2))
    vectors = {"click": torch.tensor([1.0, 0.0]), "like": torch.tensor([-1.0, 1.0])}
    w = build_weighting("pcgrad", ("click", "like"))
    assert w.backward(_linear_losses(vectors, theta), [theta], step=0) == {"click": 1.0, "like": 1.0}
    torch.testing.assert_close(theta.grad, torch.tensor([0.5, 0.5]) + torch.tensor([0.0, 1.0]))


def test_pcgrad_order_is_seeded_by_step():
    g = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    a = pcgrad_project(g, torch.Generator().manual_seed(7))
    b = pcgrad_project(g, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


# -- MGDA ----------------------------------------------------------------------------------

def test_mgda_two_tasks_matches_closed_form():
    g1, g2 = torch.tensor([1.0, 0.3]), torch.tensor([-0.6, 0.8])
    alpha1 = float(((g2 - g1) @ g2 / (g1 - g2).pow(2).sum()).clamp(0, 1))
    theta = nn.Parameter(torch.zeros(2))
    w = build_weighting("mgda", ("click", "like"))
    weights = w.backward(_linear_losses({"click": g1, "like": g2}, theta), [theta], step=0)
    assert weights["click"] == pytest.approx(alpha1, rel=1e-6)
    assert weights["like"] == pytest.approx(1 - alpha1, rel=1e-6)
    torch.testing.assert_close(theta.grad, alpha1 * g1 + (1 - alpha1) * g2)
    assert theta.grad @ g1 >= -1e-6 and theta.grad @ g2 >= -1e-6  # descent for both tasks


def test_mgda_clips_to_a_vertex_when_one_gradient_dominates():
    G = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # g1 is inside the hull's min-norm side
    alpha = min_norm_weights(G @ G.T)
    torch.testing.assert_close(alpha, torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_mgda_three_tasks_is_the_min_norm_point():
    G = torch.randn(3, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    M = G @ G.T
    alpha = min_norm_weights(M, max_iter=5000, tol=1e-12)
    grid = _simplex_grid(3)
    best = ((grid @ M) * grid).sum(1).min()
    assert alpha.sum().item() == pytest.approx(1.0) and (alpha >= 0).all()
    assert alpha @ M @ alpha <= best + 1e-6


def test_mgda_l2_normalisation_weights():
    g1, g2 = torch.tensor([10.0, 0.0]), torch.tensor([0.0, 1.0])
    theta = nn.Parameter(torch.zeros(2))
    w = build_weighting("mgda", ("click", "like"), normalize="l2")
    weights = w.backward(_linear_losses({"click": g1, "like": g2}, theta), [theta], step=0)
    # normalised gradients are orthonormal: alpha = (1/2, 1/2); weights alpha / ||g||
    assert weights["click"] == pytest.approx(0.05) and weights["like"] == pytest.approx(0.5)


# -- CAGrad --------------------------------------------------------------------------------

def test_cagrad_dual_is_the_minimiser():
    G = torch.randn(3, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    M = G @ G.T
    c = 0.5
    g0n = math.sqrt(M.mean())

    def objective(w):
        return (w @ M).sum(-1) / 3 + c * g0n * ((w @ M) * w).sum(-1).clamp_min(0).sqrt()

    w = cagrad_dual(M, c)
    assert w.sum().item() == pytest.approx(1.0) and (w >= 0).all()
    assert objective(w) <= objective(_simplex_grid(3)).min() + 1e-6


def test_cagrad_improves_the_worst_task_over_the_mean():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-0.9, 0.3])
    g0 = (g1 + g2) / 2
    theta = nn.Parameter(torch.zeros(2))
    w = build_weighting("cagrad", ("click", "like"), c=0.5, rescale=0)
    weights = w.backward(_linear_losses({"click": g1, "like": g2}, theta), [theta], step=0)
    d = theta.grad
    assert min(d @ g1, d @ g2) > min(g0 @ g1, g0 @ g2)
    assert (d - g0).norm() <= 0.5 * g0.norm() + 1e-5  # inside the ball
    torch.testing.assert_close(d, weights["click"] * g1 + weights["like"] * g2)


def test_cagrad_with_zero_radius_is_the_mean():
    theta = nn.Parameter(torch.zeros(2))
    w = build_weighting("cagrad", ("click", "like"), c=0.0)
    weights = w.backward(_linear_losses({"click": torch.tensor([1.0, 0.0]), "like": torch.tensor([0.0, 2.0])}, theta),
                         [theta], step=0)
    assert weights == pytest.approx({"click": 0.5, "like": 0.5})


# -- GradNorm ------------------------------------------------------------------------------

def test_gradnorm_weights_sum_to_T_and_equalise_gradient_norms():
    theta = nn.Parameter(torch.zeros(2))
    tasks = ("click", "like", "rating")
    vectors = {"click": torch.tensor([3.0, 0.0]), "like": torch.tensor([0.0, 1.0]), "rating": torch.tensor([1.0, 1.0])}
    w = build_weighting("gradnorm", tasks, alpha=1.5)
    opt = torch.optim.SGD(w.extra_parameters(), lr=0.01)
    for step in range(100):
        opt.zero_grad()
        weights = w.backward(_linear_losses(vectors, theta + 1.0), [theta], step=step)
        assert sum(weights.values()) == pytest.approx(3.0, rel=1e-5)
        if step == 0:
            assert weights == pytest.approx(dict.fromkeys(tasks, 1.0))
            assert w.initial_losses.tolist() == pytest.approx([3.0, 1.0, 2.0])
            assert w.logits.grad[0] > 0 > w.logits.grad[1]  # shrink the big gradient, grow the small
        opt.step()
    # losses do not move (theta is not stepped), so every r_t = 1: the target is equal norms G_t
    G = torch.tensor([weights[t] * vectors[t].norm().item() for t in tasks])
    assert (G / G.mean() - 1).abs().max() < 0.05


def test_gradnorm_gives_the_slower_task_the_larger_gradient():
    theta = nn.Parameter(torch.zeros(2))
    g = {"click": torch.tensor([1.0, 0.0]), "like": torch.tensor([0.0, 1.0])}
    w = build_weighting("gradnorm", ("click", "like"), alpha=1.5)
    opt = torch.optim.SGD(w.extra_parameters(), lr=0.01)
    for step in range(200):
        offset = {"click": 1.0, "like": 1.0 if step == 0 else 0.5}  # like's loss halves; gradients stay
        opt.zero_grad()
        weights = w.backward({t: (g[t] * theta).sum() + offset[t] for t in g}, [theta], step=step)
        opt.step()
    # r = (4/3, 2/3): at equilibrium G_click / G_like = (r_click / r_like)^alpha = 2^1.5
    assert weights["click"] / weights["like"] == pytest.approx(2 ** 1.5, rel=0.05)


def test_gradnorm_weights_sum_to_present_task_count():
    theta = nn.Parameter(torch.zeros(2))
    w = build_weighting("gradnorm", ("click", "like", "rating"))
    w.logits.data = torch.tensor([0.5, -1.0, 2.0])
    weights = w.backward(_linear_losses({"click": torch.ones(2), "rating": torch.ones(2)}, theta + 1), [theta], step=0)
    assert weights["like"] == 0.0 and weights["click"] + weights["rating"] == pytest.approx(2.0)


# -- DWA -----------------------------------------------------------------------------------

def test_dwa_equal_for_two_epochs_then_the_formula():
    tasks = ("click", "like", "rating")
    w = build_weighting("dwa", tasks)  # temperature 2
    theta = nn.Parameter(torch.zeros(2))
    vectors = {t: torch.ones(2) for t in tasks}
    epochs = [{"click": 1.0, "like": 2.0, "rating": 4.0},
              {"click": 0.5, "like": 1.9, "rating": 4.4},
              {"click": 0.4, "like": 1.0, "rating": 4.0}]
    for e, losses in enumerate(epochs):
        weights = w.backward(_linear_losses(vectors, theta), [theta], step=e)
        if e < 2:
            assert weights == pytest.approx(dict.fromkeys(tasks, 1.0))
        else:
            prev, before = epochs[e - 1], epochs[e - 2]
            r = {t: prev[t] / before[t] for t in tasks}
            z = sum(math.exp(r[t] / 2) for t in tasks)
            assert weights == pytest.approx({t: 3 * math.exp(r[t] / 2) / z for t in tasks}, rel=1e-6)
        w.epoch_end(losses)
    assert int(w.epochs_seen) == 3


def test_dwa_ratio_of_missing_or_zero_loss_counts_as_one():
    w = build_weighting("dwa", ("click", "like"))
    w.epoch_end({"click": 0.0, "like": 1.0})
    w.epoch_end({"click": 1.0})
    assert w.current_weights().tolist() == pytest.approx([1.0, 1.0])


# -- Uncertainty ---------------------------------------------------------------------------

def test_uncertainty_fixed_log_variance_gives_closed_form_weights():
    tasks = ("click", "rating")
    w = build_weighting("uncertainty", tasks)
    w.log_vars.data = torch.tensor([0.3, -0.2])
    theta = nn.Parameter(torch.zeros(2))
    losses = _linear_losses({"click": torch.tensor([1.0, 0.0]), "rating": torch.tensor([0.0, 1.0])}, theta + 2.0)
    weights = w.backward(losses, [theta], step=0)
    expected = {"click": math.exp(-0.3), "rating": 0.5 * math.exp(0.2)}  # 1/sigma^2, 1/(2 sigma^2)
    assert weights == pytest.approx(expected, rel=1e-6)
    # d/ds [c e^-s L + s/2] = -c e^-s L + 1/2, with L = 2 for both tasks
    torch.testing.assert_close(w.log_vars.grad, torch.tensor([-2 * expected["click"] + 0.5, -2 * expected["rating"] + 0.5]))
    torch.testing.assert_close(theta.grad, torch.tensor([expected["click"], expected["rating"]]))


def test_uncertainty_log_variance_is_projected_into_range():
    w = build_weighting("uncertainty", ("click",), max_log_var=4.0)
    w.log_vars.data = torch.tensor([100.0])
    theta = nn.Parameter(torch.ones(1))
    weights = w.backward({"click": theta.sum()}, [theta], step=0)
    assert weights["click"] == pytest.approx(math.exp(-4.0))
    assert w.log_vars.item() == 4.0
