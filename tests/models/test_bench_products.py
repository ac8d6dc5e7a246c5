"""scripts/bench_serving.py's bound on a request: the matrix products it records from one
`score_candidates` call are all of the ranker's counted FLOPs, and replaying them repeats them."""

import sys
from pathlib import Path

import pytest
import torch
from model_fixtures import make_x
from test_rankers import build

from recsys.models import onednn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench_serving import product_flops, ranker_flops, record_products, replay  # noqa: E402


@pytest.mark.parametrize("packed", [True, False])
def test_recorded_products_are_every_counted_flop(schema, packed):
    if packed and not onednn.available():
        pytest.skip("this PyTorch build has no oneDNN")
    model = build("mmoe", schema).eval()
    if packed:
        model.pack_cpu()
    n = onednn.MIN_ROWS + 8
    request_x, candidates = make_x(schema, 1, seed=1)[0], model.embed_candidates(make_x(schema, n, seed=2))
    with torch.inference_mode():
        calls = record_products(lambda: model.score_candidates(request_x, candidates=candidates))
    names = {str(func) for func, _, _ in calls}
    assert ("mkldnn._linear_pointwise.default" in names) == packed
    assert sum(product_flops(str(func), args) for func, args, _ in calls) == ranker_flops(model, n)["total"]


def test_replay_reruns_the_recorded_products():
    seen = []
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    with torch.inference_mode():
        calls = record_products(lambda: (a @ b, torch.bmm(a[None], b[None]), a + 1))
    assert [str(f) for f, _, _ in calls] == ["aten.matmul.default", "aten.bmm.default"]  # the add is no product
    assert [product_flops(str(f), args) for f, args, _ in calls] == [2 * 3 * 4 * 5] * 2
    calls = [(lambda *args, f=f: seen.append(f(*args)), args, kwargs) for f, args, kwargs in calls]
    replay(calls)
    torch.testing.assert_close(seen[0], a @ b)
    torch.testing.assert_close(seen[1], (a @ b)[None])
