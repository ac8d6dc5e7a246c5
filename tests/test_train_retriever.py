"""Retriever training options: a time limit and the rows recall is measured on."""

from __future__ import annotations

import pytest

from recsys.errors import ConfigError
from recsys.train_retriever import RetrieverConfig, train_retriever

TINY = {"dim": 8, "out_dim": 16, "hidden": [16]}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from tests.conftest import tiny_world, write_grouplens
    from recsys.data.prepare import PrepareConfig, prepare_movielens
    from recsys.data.sources.movielens import parse_directory

    root = tmp_path_factory.mktemp("retriever")
    write_grouplens(root / "raw", tiny_world(n_users=40, n_items=60))
    prepare_movielens(parse_directory(root / "raw"), root / "prepared", PrepareConfig())
    return root / "prepared"


def test_time_limit_stops_training_and_says_so(prepared, tmp_path):
    summary = train_retriever(prepared, tmp_path / "a", RetrieverConfig(epochs=5, batch_size=16, max_seconds=1e-9,
                                                                         model_options=TINY), log=lambda m: None)
    assert summary["stopped_at_time_limit"] and len(summary["history"]) == 1
    assert summary["history"][0]["steps"] == 0  # stopped before the first step, still evaluated and published
    assert (tmp_path / "a" / "item_vectors.safetensors").exists()


def test_eval_rows_samples_the_rows_recall_is_measured_on(prepared, tmp_path):
    config = RetrieverConfig(epochs=1, batch_size=16, eval_rows=5, model_options=TINY)
    summary = train_retriever(prepared, tmp_path / "b", config, log=lambda m: None)
    assert not summary["stopped_at_time_limit"]
    assert all(v * 5 == pytest.approx(round(v * 5)) for v in summary["test_recall"].values())  # k of 5 rows


@pytest.mark.parametrize("options, name", [({"max_seconds": -1.0}, "max_seconds"), ({"eval_rows": -1}, "eval_rows")])
def test_bad_options_are_named(options, name):
    with pytest.raises(ConfigError, match=name):
        RetrieverConfig(**options)
