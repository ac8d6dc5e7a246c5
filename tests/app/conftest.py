"""A tiny main-job directory for the app's tests (built once per session, in a few seconds).

Trained as in tests/test_serving.py (smoke ranker with ESMM, tiny retriever), then every artifact
the pages read, written with the producers' own functions where they are cheap: eval/ranker.json
(`evaluate_run`), eval/end_to_end.json (`evaluate_end_to_end`), the cold-start curve
(`curve_data`), the Pareto points (`pareto_data`), the affinity matrix (`affinity_matrix`), one
grid run's metrics.jsonl and a saved fine-tuning adapter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"


def build_tiny_run(root: Path) -> Path:
    from recsys.coldstart.report import curve_data
    from recsys.config import load_config
    from recsys.data.prepare import PrepareConfig, prepare_movielens
    from recsys.data.sources.movielens import parse_directory
    from recsys.evaluate import evaluate_run
    from recsys.experiments.affinity import affinity_matrix
    from recsys.experiments.pareto import pareto_data
    from recsys.pipeline import evaluate_end_to_end
    from recsys.train import train
    from recsys.train_retriever import RetrieverConfig, train_retriever
    from tests.conftest import tiny_world, write_grouplens

    write_grouplens(root / "raw", tiny_world(n_users=40, n_items=60))
    prepare_movielens(parse_directory(root / "raw"), root / "prepared", PrepareConfig())
    run = root / "run"
    cfg = load_config("smoke", {"dataset": str(root / "prepared"), "esmm": True, "max_steps": 30, "device": "cpu"})
    train(cfg, run / "ranker", log=lambda m: None)
    train_retriever(root / "prepared", run / "retriever",
                    RetrieverConfig(epochs=2, batch_size=64, model_options={"dim": 8, "out_dim": 16, "hidden": [16]}),
                    log=lambda m: None)
    write(run / "index.json", {"type": "flat", "params": {}, "recall": 1.0, "k": 500, "target_recall": 0.95,
                               "table": [{"type": "flat", "params": {}, "recall": 1.0, "p50_ms": 0.05, "p99_ms": 0.4,
                                          "build_s": 0.01, "reached": True}]})
    write(run / "eval" / "ranker.json", evaluate_run(run / "ranker"))
    evaluate_end_to_end(run)

    methods, shots = ["none", "finetune", "maml"], [0, 1, 5]
    results = {m: {str(k): {"like_auc": 0.6 + 0.01 * k * i, "click_auc": 0.7 + 0.005 * k, "rating_rmse": 1.1 - 0.01 * k,
                            "users": 10, "fallbacks": 0, "adapt_ms_median": 0.5 * i, "adapt_ms_p99": 1.0 * i}
                   for k in shots} for i, m in enumerate(methods)}
    intervals = {m: {str(k): {"like_auc": [0.55, 0.7]} for k in shots} for m in methods}
    report = {"run": str(run / "ranker"), "dataset": "tiny", "tasks": ["click", "like", "rating"], "esmm": True,
              "methods": methods, "shots": shots, "results": results, "intervals": intervals,
              "warm": {"like_auc": 0.72, "users": 30, "rows": 300}, "best_meta": "maml"}
    write(run / "eval" / "coldstart" / "coldstart.json", report)
    write(run / "eval" / "coldstart" / "curve.json", curve_data(report))

    configs = [{"model": "mmoe", "weighting": w, "label": w if a is None else f"static a={a:g}", "sweep_a": a,
                "metrics": {"click_auc": {"mean": x, "std": 0.002, "n": 2},
                            "like_among_clicks_auc": {"mean": y, "std": 0.003, "n": 2}}}
               for w, a, x, y in [("equal", None, 0.80, 0.66), ("pcgrad", None, 0.81, 0.65),
                                  ("static", 0.3, 0.78, 0.67), ("static", 0.7, 0.82, 0.63)]]
    grid = run / "experiments" / "grid"
    write(grid / "pareto.json", pareto_data(configs))
    write(grid / "grid.json", {"dataset": "tiny", "configurations": configs, "runs": []})
    (grid / "runs" / "mmoe__equal__seed0").mkdir(parents=True)
    shutil.copy(run / "ranker" / "metrics.jsonl", grid / "runs" / "mmoe__equal__seed0" / "metrics.jsonl")
    scores = [{"tasks": t, "seed": 0, "metrics": {"click_auc": c, "like_auc": lk}}
              for t, c, lk in [(["click"], 0.8, None), (["like"], None, 0.7), (["click", "like"], 0.81, 0.69)]]
    for s in scores:
        s["metrics"] = {k: v for k, v in s["metrics"].items() if v is not None}
    write(run / "experiments" / "affinity" / "affinity.json",
          {"dataset": "tiny", "model": "mmoe", "weighting": "equal", "tasks": ["click", "like"], "seeds": [0],
           "matrix": affinity_matrix(scores, ["click", "like"])})

    from recsys.serving import Recommender
    from recsys.meta.registry import build_adapter

    rec = Recommender(run)
    build_adapter("finetune", rec.ranker, esmm=rec.esmm).save(run / "adapters" / "finetune")
    return run


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return build_tiny_run(tmp_path_factory.mktemp("app_job"))
