import doctest
import importlib
import pkgutil

import pytest

import recsys.models
from recsys.errors import ConfigError
from recsys.models import MODELS, build_from_spec, build_model


def test_names():
    assert sorted(MODELS) == sorted(["shared_bottom", "independent", "multi_head", "mmoe", "ple",
                                     "task_concat", "task_add", "task_mul"])


def test_unknown_model_names_the_known_ones(schema):
    with pytest.raises(ConfigError, match=r"unknown model 'mmoee'; known models: .*mmoe"):
        build_model("mmoee", schema)


def test_unknown_option_names_the_key(schema):
    with pytest.raises(ConfigError, match=r"unknown option 'experts' for model 'mmoe'; known options: .*num_experts"):
        build_model("mmoe", schema, experts=3)


@pytest.mark.parametrize("option", [
    {"num_experts": 0}, {"dropout": 1.0}, {"dim": 2.5}, {"expert_hidden": []}, {"expert_hidden": [8, "a"]},
    {"bias_tower": "yes"}, {"tower_hidden": [0]},
])
def test_bad_values_are_config_errors(schema, option):
    key = next(iter(option))
    with pytest.raises(ConfigError, match=key):
        build_model("mmoe", schema, **option)


def test_unknown_or_missing_task(schema):
    with pytest.raises(ConfigError, match="unknown task 'dwell'"):
        build_model("mmoe", schema, ("click", "dwell"))
    with pytest.raises(ConfigError, match=r"\['watch'\] have no labels"):
        build_model("mmoe", schema, ("click", "watch"))
    with pytest.raises(ConfigError, match="twice"):
        build_model("mmoe", schema, ("click", "click"))


def test_json_lists_and_spec_round_trip(schema):
    model = build_model("ple", schema, expert_hidden=[32, 16], tower_hidden=[], dropout=0)
    assert model.config.expert_hidden == (32, 16) and model.config.tower_hidden == ()
    assert model.config.dropout == 0.0
    for name in MODELS:
        spec = build_model(name, schema, ("click", "rating")).spec()
        again = build_from_spec(spec, schema)
        assert type(again) is MODELS[name] and again.config == build_model(name, schema).config
        assert again.tasks == ("click", "rating") and spec["name"] == name


def test_docstring_examples_run():
    for info in pkgutil.iter_modules(recsys.models.__path__):
        module = importlib.import_module(f"recsys.models.{info.name}")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, info.name
