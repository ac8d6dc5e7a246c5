"""`Ranker.score_candidates` (one request, many candidates) equals `forward` on the tiled rows."""

import pytest
import torch
from model_fixtures import make_x
from test_rankers import NAMES, build

from recsys.data.fields import Field, Schema
from recsys.models.base import REQUEST_SIDES, Ranker
from recsys.models.layers import MLP, ParallelMLP, SplitInput


def tiled(schema, request_x, candidate_x):
    """x [B, W]: each candidate's item columns with the request's other columns."""
    x = candidate_x.clone()
    for f in schema.fields:
        if f.side in REQUEST_SIDES:
            x[:, schema.slice(f.name)] = request_x[schema.slice(f.name)]
    return x


def single_valued_schema() -> Schema:
    """Simulator-like: every field single-valued, so the item fields' columns form one block."""
    return Schema(fields=(Field("f_user_id", "user", "user", 6), Field("f_user_age", "user", "age", 4),
                          Field("f_item_id", "item", "item", 9), Field("f_item_topic", "item", "topic", 5),
                          Field("f_query_id", "query", "item", 9), Field("f_query_topic", "query", "topic", 5)),
                  tasks=("click", "like", "rating"), num_positions=5, dataset="tiny-sim")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [1, 9])
@pytest.mark.parametrize("layout", ["movielens", "slates", "single_valued"])
def test_score_candidates_matches_forward_on_tiled_rows(name, batch, layout, schema, schema_pos):
    # movielens: multi-valued genres (item columns scattered); slates: + a context field on the
    # request side; single_valued: the item columns are one block (weights read as views)
    schema = {"movielens": schema, "slates": schema_pos, "single_valued": single_valued_schema()}[layout]
    model = build(name, schema).eval()
    assert isinstance(model._split_layout()[1], slice) == (layout == "single_valued")
    request_x, candidate_x = make_x(schema, 1, seed=1)[0], make_x(schema, batch, seed=2)
    with torch.no_grad():
        got = model.score_candidates(request_x, candidate_x)
        cached = model.score_candidates(request_x, candidates=model.embed_candidates(candidate_x))
        want = model(tiled(schema, request_x, candidate_x))
    assert tuple(got) == tuple(want)
    for task in want:
        assert got[task].shape == (batch,)
        torch.testing.assert_close(got[task], want[task], atol=1e-5, rtol=1e-5)
        assert torch.equal(cached[task], got[task])  # precomputed candidate rows: the same numbers


@pytest.mark.parametrize("name", NAMES)
def test_the_architectures_compute_the_request_part_once(name, schema):
    """Every registered architecture overrides the tiling fallback (its first layers read h)."""
    model = build(name, schema)
    assert type(model).scores_split is not Ranker.scores_split


def test_fallback_tiles_for_an_architecture_without_a_split_path(schema):
    class Linear(Ranker):
        name = "linear"

        def __init__(self, schema):
            super().__init__(schema)
            self.head = torch.nn.Linear(self.in_dim, len(self.tasks))

        def scores(self, h):
            return self.head(h).t()

    torch.manual_seed(0)
    model = Linear(schema)
    request_x, candidate_x = make_x(schema, 1, seed=3), make_x(schema, 5, seed=4)
    got = model.score_candidates(request_x, candidate_x)  # a [1, W] request works too
    want = model(tiled(schema, request_x[0], candidate_x))
    for task in want:
        torch.testing.assert_close(got[task], want[task], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="one row"):
        model.score_candidates(candidate_x, candidate_x)
    with pytest.raises(ValueError, match="exactly one"):
        model.score_candidates(request_x)
    with pytest.raises(ValueError, match="embed_candidates rows"):
        model.score_candidates(request_x, candidates=torch.zeros(5, 3))


@pytest.mark.parametrize("cols", [slice(1, 3), torch.tensor([0, 3])])
def test_split_input_layers_match_the_tiled_input(cols):
    torch.manual_seed(0)
    request = torch.randn(1, 4)
    request[:, cols] = 0.0
    h = SplitInput(request, torch.randn(6, 2), cols)
    full = h.full()
    assert torch.equal(full[:, cols], h.candidates)
    mlp, parallel = MLP(4, (8, 3)), ParallelMLP(3, 4, (8,), out_dim=2)
    torch.testing.assert_close(mlp.forward_split(h), mlp(full))
    torch.testing.assert_close(parallel.forward_split(h), parallel(full))


def test_parallel_mlp_scores_the_same_with_and_without_autograd():
    """A width-1 last layer takes a faster kernel when no gradient is needed."""
    torch.manual_seed(0)
    towers, h = ParallelMLP(3, 8, (16,), out_dim=1), torch.randn(3, 40, 8)
    with torch.no_grad():
        fast = towers(h)
    torch.testing.assert_close(fast, towers(h).detach(), atol=1e-6, rtol=1e-6)
