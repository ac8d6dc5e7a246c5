import math

import pytest
import torch

from recsys.errors import ConfigError, UnknownIdError
from recsys.mtl.losses import ctcvr_label, esmm_bce, observed_counts, predict_proba, task_losses

NAN = float("nan")


def _bce(x: float, y: float) -> float:
    p = 1 / (1 + math.exp(-x))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_binary_and_regression_match_hand_computation():
    out = {"click": torch.tensor([0.5, -1.0, 2.0]), "rating": torch.tensor([3.0, 1.0, 4.5])}
    y = torch.tensor([[1.0, 4.0], [0.0, NAN], [1.0, 5.0]])
    losses = task_losses(out, y, ("click", "rating"))
    expected_click = (_bce(0.5, 1) + _bce(-1.0, 0) + _bce(2.0, 1)) / 3
    expected_rating = ((3.0 - 4.0) ** 2 + (4.5 - 5.0) ** 2) / 2  # NaN row adds nothing
    assert losses["click"].item() == pytest.approx(expected_click, rel=1e-6)
    assert losses["rating"].item() == pytest.approx(expected_rating, rel=1e-6)


def test_nan_rows_add_no_loss_and_no_gradient():
    x = torch.tensor([0.3, 7.0, -2.0], requires_grad=True)
    y = torch.tensor([[1.0], [NAN], [0.0]])
    loss = task_losses({"like": x}, y, ("like",))["like"]
    assert loss.item() == pytest.approx((_bce(0.3, 1) + _bce(-2.0, 0)) / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[1].item() == 0.0


def test_changing_a_masked_output_does_not_change_the_loss():
    y = torch.tensor([[2.0], [NAN]])
    a = task_losses({"watch": torch.tensor([1.0, 0.0])}, y, ("watch",))["watch"]
    b = task_losses({"watch": torch.tensor([1.0, 1e6])}, y, ("watch",))["watch"]
    assert a.item() == b.item() == 1.0


def test_task_with_no_observed_row_is_left_out():
    out = {"click": torch.zeros(2, requires_grad=True), "rating": torch.zeros(2, requires_grad=True)}
    y = torch.tensor([[1.0, NAN], [0.0, NAN]])
    losses = task_losses(out, y, ("click", "rating"))
    assert set(losses) == {"click"}
    assert losses["click"].requires_grad


def test_batch_of_one():
    losses = task_losses({"click": torch.tensor([0.0])}, torch.tensor([[1.0]]), ("click",))
    assert losses["click"].item() == pytest.approx(math.log(2))


def test_esmm_loss_is_bce_of_product_probability():
    torch.manual_seed(0)
    a, b = torch.randn(32, dtype=torch.float64) * 3, torch.randn(32, dtype=torch.float64) * 3
    t = (torch.rand(32) < 0.4).double()
    p = torch.sigmoid(a) * torch.sigmoid(b)
    expected = -(t * p.log() + (1 - t) * (1 - p).log())
    torch.testing.assert_close(esmm_bce(a, b, t), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("scale", [30.0, 100.0, 1e4])
def test_esmm_loss_and_gradient_finite_for_extreme_logits(scale):
    a = torch.tensor([1.0, -1.0, 1.0, -1.0, 0.0, 1.0]) * scale
    b = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, 0.0]) * scale
    a.requires_grad_(True)
    b.requires_grad_(True)
    for target in (0.0, 1.0):
        loss = esmm_bce(a, b, torch.full((6,), target))
        assert torch.isfinite(loss).all()
        ga, gb = torch.autograd.grad(loss.sum(), (a, b))
        assert torch.isfinite(ga).all() and torch.isfinite(gb).all()
    # p -> 1 with target 0: the loss is about a + b - log 2 ... large but exact-ish, not inf
    big = esmm_bce(torch.tensor([scale]), torch.tensor([scale]), torch.tensor([0.0]))
    assert big.item() == pytest.approx(scale - math.log(2), rel=1e-4)


def test_esmm_like_loss_over_all_impressions():
    tasks = ("click", "like")
    y = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, NAN], [NAN, NAN], [1.0, NAN]])
    label = ctcvr_label(y, tasks)
    assert label[:3].tolist() == [1.0, 0.0, 0.0]  # unclicked: not liked
    assert torch.isnan(label[3:]).all()  # unknown click, or clicked with no like label
    out = {"click": torch.tensor([0.2, -0.4, 1.0, 0.0, 3.0]), "like": torch.tensor([1.0, 0.5, -2.0, 0.0, 0.0])}
    losses = task_losses(out, y, tasks, esmm=True)
    expected = esmm_bce(out["click"][:3], out["like"][:3], label[:3]).mean()
    assert losses["like"].item() == pytest.approx(expected.item(), rel=1e-6)
    plain = task_losses(out, y, tasks)
    assert losses["click"].item() == pytest.approx(plain["click"].item())


def test_shards_with_global_denominators_sum_to_the_whole_batch_loss():
    """What a distributed run does: each shard divides by the whole batch's observed counts."""
    tasks = ("click", "like", "rating")
    y = torch.tensor([[1.0, 1.0, 4.0], [1.0, 0.0, 2.0], [0.0, NAN, NAN], [NAN, NAN, NAN], [1.0, NAN, 3.0]])
    out = {"click": torch.tensor([0.2, -0.4, 1.0, 0.0, 3.0]), "like": torch.tensor([1.0, 0.5, -2.0, 0.0, 0.0]),
           "rating": torch.tensor([3.0, 1.0, 0.0, 0.0, 2.5])}
    for esmm in (False, True):
        counts = observed_counts(y, tasks, esmm=esmm)
        assert counts.tolist() == ([4.0, 3.0, 3.0] if esmm else [4.0, 2.0, 3.0])
        whole = task_losses(out, y, tasks, esmm=esmm)
        shards = [task_losses({t: v[rows] for t, v in out.items()}, y[rows], tasks, esmm=esmm, denominators=counts)
                  for rows in (torch.tensor([0, 1, 2, 4]), torch.tensor([3]))]
        assert set(shards[1]) == set(tasks)  # kept (as 0) although row 3 has no label at all
        for t in tasks:
            assert (shards[0][t] + shards[1][t]).item() == pytest.approx(whole[t].item(), rel=1e-6)
    none = task_losses({"click": torch.zeros(1)}, torch.tensor([[NAN]]), ("click",), denominators=torch.zeros(1))
    assert none == {}


def test_predict_proba():
    out = {"click": torch.tensor([0.0, 2.0]), "like": torch.tensor([0.0, -1.0]), "rating": torch.tensor([3.5, 1.0])}
    tasks = ("click", "like", "rating")
    plain = predict_proba(out, tasks)
    torch.testing.assert_close(plain["like"], torch.sigmoid(out["like"]))
    torch.testing.assert_close(plain["rating"], out["rating"])
    esmm = predict_proba(out, tasks, esmm=True)
    torch.testing.assert_close(esmm["like"], torch.sigmoid(out["click"]) * torch.sigmoid(out["like"]))
    torch.testing.assert_close(esmm["click"], torch.sigmoid(out["click"]))


def test_input_errors():
    y = torch.zeros(3, 1)
    with pytest.raises(ValueError, match="expected \\(3,\\)"):
        task_losses({"click": torch.zeros(4)}, y, ("click",))
    with pytest.raises(ValueError, match="T = 2"):
        task_losses({"click": torch.zeros(3), "like": torch.zeros(3)}, y, ("click", "like"))
    with pytest.raises(UnknownIdError, match="'dwell'"):
        task_losses({"dwell": torch.zeros(3)}, y, ("dwell",))
    with pytest.raises(UnknownIdError, match="no task 'like'"):
        task_losses({"click": torch.zeros(3)}, y, ("like",))
    with pytest.raises(ConfigError, match="esmm"):
        task_losses({"like": torch.zeros(3)}, y, ("like",), esmm=True)
