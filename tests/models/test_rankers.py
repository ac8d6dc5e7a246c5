"""Properties every registered ranker must have."""

import math

import pytest
import torch
from model_fixtures import make_position, make_x

from recsys.models import MODELS, build_model

NAMES = sorted(MODELS)
# Small configs keep the tests fast; a deep PLE checks the shared-parameter bookkeeping.
SMALL = {
    "shared_bottom": {"bottom_hidden": (16, 8), "tower_hidden": (8,)},
    "independent": {"hidden": (16, 8)},
    "multi_head": {"hidden": (16, 8)},
    "mmoe": {"num_experts": 3, "expert_hidden": (16, 8), "tower_hidden": (8,)},
    "ple": {"expert_hidden": (16, 12, 8), "shared_experts": 2, "task_experts": 2, "tower_hidden": (8,)},
    "task_concat": {"hidden": (16, 8), "task_dim": 4},
    "task_add": {"hidden": (16, 8), "task_dim": 4},
    "task_mul": {"hidden": (16, 8), "task_dim": 4},
}


def build(name, schema, seed=0, **extra):
    torch.manual_seed(seed)
    return build_model(name, schema, dim=4, **{**SMALL[name], **extra})


def test_every_model_is_covered():
    assert set(SMALL) == set(MODELS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [1, 7])
def test_outputs_per_task(name, batch, schema):
    model = build(name, schema)
    out = model(make_x(schema, batch))
    assert tuple(out) == schema.tasks
    for score in out.values():
        assert score.shape == (batch,) and torch.isfinite(score).all()


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(name, schema_pos):
    model = build(name, schema_pos)
    out = model(make_x(schema_pos, 1)[:0], torch.zeros(0, dtype=torch.long))
    assert all(score.shape == (0,) for score in out.values())


@pytest.mark.parametrize("name", NAMES)
def test_defaults_build_and_run(name, schema_pos):
    model = build_model(name, schema_pos)
    out = model(make_x(schema_pos, 3), make_position(schema_pos, 3))
    assert tuple(out) == schema_pos.tasks and model.bias_tower is not None


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name, schema_pos):
    model = build(name, schema_pos)
    out = model(make_x(schema_pos, 32), make_position(schema_pos, 32))
    sum(out.values()).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_shared_parameters_are_exactly_those_used_by_several_tasks(name, schema_pos):
    model = build(name, schema_pos)
    shared = {id(p) for p in model.shared_parameters()}
    assert shared and id(model.embedding.weight) in shared
    assert len(model.task_parameters()) + len(shared) == len(list(model.parameters()))
    x, position = make_x(schema_pos, 32), make_position(schema_pos, 32)
    params = list(model.parameters())
    grads = []
    for task in model.tasks:
        out = model(x, position)[task].sum()
        grads.append([g if g is not None else torch.zeros_like(p)
                      for g, p in zip(torch.autograd.grad(out, params, allow_unused=True), params)])
    names = [n for n, _ in model.named_parameters()]
    for k, p in enumerate(params):
        per_task = [g[k].abs() for g in grads]
        overlap = sum(float((per_task[i] * per_task[j]).sum())
                      for i in range(len(per_task)) for j in range(i + 1, len(per_task)))
        # shared: some element gets gradient from two tasks; task-specific: no element does
        assert (overlap > 0) == (id(p) in shared), names[k]


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_a_seed(name, schema):
    x = make_x(schema, 7)
    a, b = build(name, schema, seed=3)(x), build(name, schema, seed=3)(x)
    c = build(name, schema, seed=4)(x)
    assert all(torch.equal(a[t], b[t]) for t in schema.tasks)
    assert not all(torch.equal(a[t], c[t]) for t in schema.tasks)


@pytest.mark.parametrize("name", NAMES)
def test_task_subset_and_single_task(name, schema):
    x = make_x(schema, 5)
    assert tuple(build(name, schema, tasks=None)(x)) == ("click", "like", "rating")
    model = build_model(name, schema, ("rating",), dim=4, **SMALL[name])
    assert tuple(model(x)) == ("rating",)


@pytest.mark.parametrize("name", NAMES)
def test_serving_path_matches_forward(name, schema):
    model = build(name, schema).eval()
    x = make_x(schema, 6)
    request = x[:1]
    for field in schema.side("user") + schema.side("query"):
        x[:, schema.slice(field.name)] = request[:, schema.slice(field.name)]
    emb = model.embedding
    e = emb.merge({("user", "query"): emb.embed(request, ("user", "query")), ("item",): emb.embed(x, ("item",))})
    direct, served = model(x), model.forward_embedded(e)
    for t in schema.tasks:
        torch.testing.assert_close(served[t], direct[t])


@pytest.mark.parametrize("name", NAMES)
def test_wrong_width_raises_value_error(name, schema):
    model = build(name, schema)
    with pytest.raises(ValueError, match="x has 9 columns .* has 10"):
        model(torch.zeros(2, 9, dtype=torch.long))


def test_init_output_bias_sets_the_starting_scores(schema):
    model = build("mmoe", schema)
    x = make_x(schema, 4)
    before = model(x)
    model.init_output_bias({"click": math.log(0.2 / 0.8), "rating": 3.5})
    after = model(x)
    torch.testing.assert_close(after["rating"] - before["rating"], torch.full((4,), 3.5))
    assert torch.equal(after["like"], before["like"])


@pytest.mark.parametrize("name", ["mmoe", "ple"])
def test_gate_weights_sum_to_one(name, schema):
    model = build(name, schema)
    model(make_x(schema, 7))
    assert tuple(model.last_gates) == schema.tasks
    for task, gates in model.last_gates.items():
        assert gates.shape == (7, len(model.gate_labels[task]))
        assert not gates.requires_grad and (gates >= 0).all()
        torch.testing.assert_close(gates.sum(-1), torch.ones(7))
    if name == "ple":
        assert model.gate_labels["like"] == ("like/0", "like/1", "shared/0", "shared/1")


def test_task_conditioning_modes_differ(schema):
    x = make_x(schema, 5)
    outs = [build(name, schema, seed=0)(x)["like"] for name in ("task_concat", "task_add", "task_mul")]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])
    assert [build(n, schema).mode for n in ("task_concat", "task_add", "task_mul")] == ["concat", "add", "mul"]


def test_functional_call_supports_second_order_adaptation(schema):
    # MAML-style adapters run the model with swapped-in parameters and differentiate twice.
    model = build("mmoe", schema)
    params = dict(model.named_parameters())
    x = make_x(schema, 8)

    def loss(p):
        return sum(o.square().mean() for o in torch.func.functional_call(model, p, (x,)).values())

    grads = torch.autograd.grad(loss(params), list(params.values()), create_graph=True)
    fast = {k: v - 0.1 * g for (k, v), g in zip(params.items(), grads)}
    loss(fast).backward()
    assert model.embedding.weight.grad is not None and torch.isfinite(model.embedding.weight.grad).all()
