import pytest
import torch
from model_fixtures import make_position, make_x

from recsys.models import BiasTower, build_model


def test_bias_changes_only_click_and_only_with_position(schema_pos):
    torch.manual_seed(0)
    model = build_model("mmoe", schema_pos).eval()
    x, position = make_x(schema_pos, 8), make_position(schema_pos, 8)
    plain, biased = model(x), model(x, position)
    assert not torch.allclose(plain["click"], biased["click"])
    assert torch.equal(plain["like"], biased["like"]) and torch.equal(plain["rating"], biased["rating"])
    context = model.embedding(x)[:, [model.embedding.fields.index("f_device")]].flatten(1)
    torch.testing.assert_close(biased["click"] - plain["click"], model.bias_tower(position, context))
    tower, model.bias_tower = model.bias_tower, None  # serving never sees the tower
    assert torch.equal(model(x, position)["click"], plain["click"])
    model.bias_tower = tower


def test_no_tower_without_positions_or_click(schema, schema_pos):
    model = build_model("shared_bottom", schema)
    assert model.bias_tower is None
    x = make_x(schema, 4)
    assert torch.equal(model.eval()(x)["click"], model(x, torch.ones(4, dtype=torch.long))["click"])
    assert build_model("shared_bottom", schema_pos, ("like", "rating")).bias_tower is None
    assert build_model("shared_bottom", schema_pos, bias_tower=False).bias_tower is None
    no_context = build_model("shared_bottom", schema_pos, bias_context=False)
    assert no_context.bias_tower.context_dim == 0


def test_position_dropout_hides_positions_in_training_only():
    torch.manual_seed(0)
    tower = BiasTower(5, position_dropout=0.5)
    position = torch.randint(1, 6, (400,))
    tower.eval()
    known, unknown = tower(position), tower(torch.zeros(400, dtype=torch.long))
    tower.train()
    trained = tower(position)
    dropped = torch.isclose(trained, unknown) & ~torch.isclose(known, unknown)
    kept = torch.isclose(trained, known)
    assert bool((dropped | kept).all()) and 120 < int(dropped.sum()) < 280


def test_bad_positions_raise(schema_pos):
    model = build_model("mmoe", schema_pos)
    x = make_x(schema_pos, 3)
    with pytest.raises(ValueError, match=r"position 6 outside 0..5"):
        model(x, torch.tensor([1, 6, 2]))
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        model(x, torch.tensor([1, 2]))
