"""The main job end to end: on the tiny world (fast) and on real MovieLens-100k (slow)."""

from __future__ import annotations

import json

import pytest

from recsys.pipeline import run_main_job


def test_main_job_on_the_tiny_world(tmp_path, grouplens_dir):
    out = tmp_path / "main"
    report = run_main_job(data_dir=tmp_path / "data", out=out, source=str(grouplens_dir),
                          coldstart_methods=("none", "finetune"), coldstart_shots=(0, 1, 3), log=lambda m: None)
    text = report.read_text()
    for section in ("Multi-task ranker", "End-to-end recommender", "Candidate index", "Cold start", "Time per step"):
        assert section in text
    for path in ("ranker/model.safetensors", "retriever/item_vectors.safetensors", "index.json",
                 "eval/ranker.json", "eval/end_to_end.json", "eval/coldstart/coldstart.json",
                 "eval/coldstart/curve.png", "eval/coldstart/oracle/oracle.json", "adapters/finetune/adapter.json",
                 "training.png"):
        assert (out / path).exists(), path
    index = json.loads((out / "index.json").read_text())
    assert index["recall"] >= index["target_recall"]
    # a second run reuses every finished step
    logs: list[str] = []
    run_main_job(data_dir=tmp_path / "data", out=out, source=str(grouplens_dir),
                 coldstart_methods=("none", "finetune"), coldstart_shots=(0, 1, 3), log=logs.append)
    assert any("already trained" in m for m in logs) and any("up to date" in m for m in logs)
    assert not any("oracle: training" in m for m in logs)                 # the oracle is reused too


@pytest.mark.slow
def test_main_job_on_movielens_100k(tmp_path):
    """The README's first command on the real data: the models beat popularity."""
    out = tmp_path / "main"
    run_main_job(data_dir=tmp_path / "data", out=out, log=lambda m: None)
    ranker = json.loads((out / "eval" / "ranker.json").read_text())
    for task in ("click", "like"):
        assert ranker["model"][task]["auc"] > ranker["popularity"][task]["auc"] + 0.03
    assert ranker["model"]["like_among_clicks"]["auc"] > ranker["popularity"]["like_among_clicks"]["auc"]
    e2e = json.loads((out / "eval" / "end_to_end.json").read_text())
    assert e2e["recommender"]["ndcg@10"] > e2e["popularity"]["ndcg@10"]
    assert (out / "report.md").exists() and (out / "eval" / "coldstart" / "coldstart.json").exists()
    cold = json.loads((out / "eval" / "coldstart" / "coldstart.json").read_text())
    like = {m: cold["results"][m]["5"]["like_auc"] for m in cold["methods"]}
    assert cold["gap_reference"] == "oracle" and cold["oracle"]["like_auc"] > like["none"]   # a gap to close
    assert cold["paired"]["blackbox_maml - none"]["5"]["like_auc"]["lo"] > 0
