"""`Ranker.pack_cpu`: CPU inference through oneDNN with packed weights gives the plain path's
scores, follows optimiser steps, and stays out of training, autograd and `torch.func`."""

import copy

import pytest
import torch
from model_fixtures import make_x
from test_rankers import NAMES, build
from test_score_candidates import single_valued_schema

from recsys.models import onednn
from recsys.models.layers import MLP, ParallelMLP

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this PyTorch build has no oneDNN")


def calls(monkeypatch) -> list[int]:
    """Counts calls of the packed matmul."""
    seen: list[int] = []
    real = onednn.linear

    def counting(*args, **kwargs):
        seen.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(onednn, "linear", counting)
    return seen


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layout", ["movielens", "single_valued"])
def test_packed_scores_equal_the_plain_path(name, layout, schema, monkeypatch):
    schema = {"movielens": schema, "single_valued": single_valued_schema()}[layout]
    plain = build(name, schema).eval()
    packed = copy.deepcopy(plain)
    uses_mlps = packed.pack_cpu() > 0
    request_x, candidate_x = make_x(schema, 1, seed=1)[0], make_x(schema, onednn.MIN_ROWS + 3, seed=2)
    used = calls(monkeypatch)
    with torch.inference_mode():
        want_split = plain.score_candidates(request_x, candidate_x)
        want_full = plain(candidate_x)
        got_split = packed.score_candidates(request_x, candidate_x)
        got_full = packed(candidate_x)
    assert bool(used) == uses_mlps  # task_conditioned has no MLP blocks: nothing packed, nothing called
    for task in want_full:
        torch.testing.assert_close(got_split[task], want_split[task], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_full[task], want_full[task], atol=1e-5, rtol=1e-5)


def test_packs_follow_an_optimiser_step_and_never_run_with_autograd(schema, monkeypatch):
    model = build("mmoe", schema)
    model.pack_cpu()
    x = make_x(schema, onednn.MIN_ROWS, seed=3)
    used = calls(monkeypatch)
    model.train()
    loss = sum(v.sum() for v in model(x).values())  # training: plain path, gradients flow
    assert not used
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    model.eval()
    with torch.no_grad():
        packed = model(x)
    assert used
    for m in model.modules():  # the plain path on the same (stepped) weights
        if isinstance(m, (MLP, ParallelMLP)):
            m._packs = None
    with torch.no_grad():
        plain = model(x)
    for task in plain:
        torch.testing.assert_close(packed[task], plain[task], atol=1e-5, rtol=1e-5)


def test_functional_call_with_other_weights_runs_the_plain_path(schema, monkeypatch):
    """A cold-start adapter calls the ranker with its own weights: the packs must not answer."""
    model = build("shared_bottom", schema).eval()
    model.pack_cpu()
    x = make_x(schema, onednn.MIN_ROWS, seed=4)
    params = {k: v.detach() + 0.1 for k, v in model.named_parameters()}
    used = calls(monkeypatch)
    with torch.no_grad():
        got = torch.func.functional_call(model, params, (x,))
    assert not used
    reference = build("shared_bottom", schema).eval()
    reference.load_state_dict({**model.state_dict(), **params})
    with torch.no_grad():
        want = reference(x)
    for task in want:
        torch.testing.assert_close(got[task], want[task])


def test_deep_copies_and_state_dicts_carry_no_packs(schema):
    model = build("ple", schema).eval()
    model.pack_cpu()
    clone = copy.deepcopy(model)
    assert all(getattr(m, "_packs", None) is None for m in clone.modules())
    assert all(not v.is_mkldnn for v in model.state_dict().values())


def test_a_few_rows_run_the_plain_path(schema, monkeypatch):
    """Below MIN_ROWS oneDNN's per-call cost outweighs its kernels: the plain path answers."""
    model = build("mmoe", schema).eval()
    model.pack_cpu()
    used = calls(monkeypatch)
    with torch.no_grad():
        model(make_x(schema, onednn.MIN_ROWS - 1, seed=5))
    assert not used
    with torch.no_grad():
        model(make_x(schema, onednn.MIN_ROWS, seed=5))
    assert used
