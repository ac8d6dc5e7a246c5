import math

import pytest
import torch
from mtl_fixtures import TASKS, TinyMTL, make_batch
from torch import nn

from recsys.mtl import gate_entropy, gate_utilisation, grad_cosine, task_losses


def test_grad_cosine_identical_opposite_orthogonal():
    theta = nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
    base = (theta**2).sum()
    losses = {"click": base, "like": 2 * base, "rating": -base, "watch": (theta * torch.tensor([2.0, 1.0, 0.0])).sum()}
    cos = grad_cosine(losses, [theta])
    assert cos["click|like"] == pytest.approx(1.0)
    assert cos["click|rating"] == pytest.approx(-1.0)
    # grad of base is 2 theta = (1, -2, 4); watch's is (2, 1, 0): orthogonal
    assert cos["click|watch"] == pytest.approx(0.0, abs=1e-7)
    assert set(cos) == {"click|like", "click|rating", "click|watch", "like|rating", "like|watch", "rating|watch"}


def test_grad_cosine_keeps_the_graph_and_sets_no_grad():
    model = TinyMTL()
    x, y = make_batch(0)
    losses = task_losses(model(x), y, TASKS)
    cos = grad_cosine(losses, model.shared_parameters())
    assert all(-1.0 <= v <= 1.0 and math.isfinite(v) for v in cos.values())
    assert all(p.grad is None for p in model.parameters())
    sum(losses.values()).backward()  # training can still backpropagate


def test_grad_cosine_zero_gradient_and_single_task():
    theta = nn.Parameter(torch.ones(2))
    other = nn.Parameter(torch.ones(2))
    assert grad_cosine({"click": theta.sum(), "like": other.sum()}, [theta]) == {"click|like": 0.0}
    assert grad_cosine({"click": theta.sum()}, [theta]) == {}


def test_gate_utilisation_and_entropy():
    gates = {
        "click": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        "like": torch.full((4, 3), 1 / 3),
    }
    use = gate_utilisation(gates)
    assert use["click"] == pytest.approx([0.5, 0.5, 0.0])
    assert use["like"] == pytest.approx([1 / 3] * 3)
    ent = gate_entropy(gates)
    assert ent["click"]["row"] == pytest.approx(0.0)  # each row picks one expert
    assert ent["click"]["usage"] == pytest.approx(math.log(2) / math.log(3))  # two of three experts used
    assert ent["like"] == pytest.approx({"row": 1.0, "usage": 1.0})


def test_gate_batch_of_one_and_bad_shape():
    assert gate_utilisation({"click": torch.tensor([[0.25, 0.75]])}) == {"click": [0.25, 0.75]}
    with pytest.raises(ValueError, match="\\[B, E\\]"):
        gate_utilisation({"click": torch.ones(3)})
