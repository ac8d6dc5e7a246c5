"""Multi-task experiments: the weighting grid (reports, mean ± std, resume), task affinity (the
matrix and its sign convention), training diagnostics, and input checks before any training."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys

import pytest

import recsys.experiments.runs as runs_module
from recsys.errors import ConfigError
from recsys.experiments import add_commands, summarise_diagnostics
from recsys.experiments.affinity import affinity_matrix, run_affinity
from recsys.experiments.grid import METRICS, run_grid, strategy_effects
from recsys.experiments.pareto import pareto_front

FAST = {"max_steps": 3, "batch_size": 64, "device": "cpu", "threads": 1, "diagnostics_every": 1}


def _counting_train(monkeypatch, *, fail_on_call: int = 0):
    """Wrap the experiments' `train`, counting calls; optionally die on call number `fail_on_call`."""
    real, calls = runs_module.train, []

    def counted(config, run_dir, **kw):
        calls.append(run_dir.name)
        if len(calls) == fail_on_call:
            raise KeyboardInterrupt("killed")
        return real(config, run_dir, **kw)

    monkeypatch.setattr(runs_module, "train", counted)
    return calls


def test_grid_reports_and_mean_std_over_seeds(tmp_path, prepared):
    out = tmp_path / "grid"
    report = run_grid(str(prepared), "mmoe,shared_bottom", "equal,pcgrad", "0,1", "0.3,0.7", out=out,
                      preset="smoke", overrides=FAST, log=lambda m: None)
    for name in ("grid.json", "grid.md", "pareto.json", "pareto.png"):
        assert (out / name).exists(), name
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "grid.json").read_text())
    assert len(saved["runs"]) == 2 * 2 * 2 + 2 * 2 * 2 == len(list((out / "runs").iterdir()))
    assert len(saved["configurations"]) == 8
    sweep_run = next(r for r in saved["runs"] if r["tags"]["label"] == "static a=0.3")
    assert sweep_run["config"]["weighting_options"] == {"weights": {"click": 0.3, "like": 0.7, "rating": 1.0}}

    for row in saved["configurations"]:
        runs = [r for r in saved["runs"] if (r["tags"]["model"], r["tags"]["label"]) == (row["model"], row["label"])]
        assert sorted(r["tags"]["seed"] for r in runs) == [0, 1]
        for key, (_, task, metric, _) in METRICS.items():
            values = [r["test"][task][metric] for r in runs]
            assert row["metrics"][key]["mean"] == pytest.approx(statistics.mean(values))
            assert row["metrics"][key]["std"] == pytest.approx(statistics.stdev(values))

    pareto = json.loads((out / "pareto.json").read_text())
    points = pareto["points"]
    assert len(points) == 8 and sum(p["kind"] == "static_sweep" for p in points) == 4
    assert [p["pareto"] for p in points] == pareto_front([(p["x"], p["y"]) for p in points])
    mmoe_equal = next(r for r in saved["configurations"] if (r["model"], r["label"]) == ("mmoe", "equal"))
    point = next(p for p in points if (p["model"], p["label"]) == ("mmoe", "equal"))
    assert point["x"] == mmoe_equal["metrics"]["click_auc"]["mean"]
    assert point["y"] == mmoe_equal["metrics"]["like_among_clicks_auc"]["mean"]

    md = (out / "grid.md").read_text()
    assert "| mmoe | equal |" in md and "| shared_bottom | static a=0.7 |" in md and "What each strategy buys" in md
    assert report["effects"]["reference"] == "equal" and {r["label"] for r in report["effects"]["rows"]} == {
        "pcgrad", "static a=0.3", "static a=0.7"}
    mmoe_diag = mmoe_equal["diagnostics"]
    assert set(mmoe_diag["gates"]) == {"click", "like", "rating"} and "click|like" in mmoe_diag["grad_cosine"]


def test_killed_grid_continues_and_finished_runs_are_skipped(tmp_path, prepared, monkeypatch):
    out = tmp_path / "grid"
    args = (str(prepared), "mmoe", "equal,dwa", "0,1", "none")
    calls = _counting_train(monkeypatch, fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        run_grid(*args, out=out, preset="smoke", overrides=FAST, log=lambda m: None)
    assert len(calls) == 3 and not (out / "grid.json").exists()

    calls = _counting_train(monkeypatch)
    report = run_grid(*args, out=out, preset="smoke", overrides=FAST, log=lambda m: None)
    assert calls == ["mmoe__dwa__seed0", "mmoe__dwa__seed1"]  # the two runs not finished before the kill
    assert len(report["runs"]) == 4

    calls = _counting_train(monkeypatch)
    again = run_grid(*args, out=out, preset="smoke", overrides=FAST, log=lambda m: None)
    assert calls == [] and again["configurations"] == report["configurations"]

    with pytest.raises(ConfigError, match="max_steps"):  # the same --out with other options
        run_grid(*args, out=out, preset="smoke", overrides={**FAST, "max_steps": 4}, log=lambda m: None)


def test_parallel_jobs_give_the_same_runs(tmp_path, prepared):
    """Worker processes (spawned) give the runs one process gives. Run through the command in a
    fresh interpreter: spawned workers re-import the parent's modules, and pytest's process holds
    other tests' state (Streamlit pages) that has no business in a worker."""
    import json
    import subprocess
    import sys

    args = (str(prepared), "shared_bottom", "equal", "0,1", "none")
    one = run_grid(*args, out=tmp_path / "one", preset="smoke", overrides=FAST, log=lambda m: None)
    sets = [a for k, v in FAST.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    cmd = [sys.executable, "-m", "recsys", "experiment", "grid", "--dataset", str(prepared), "--models", "shared_bottom",
           "--weightings", "equal", "--seeds", "0,1", "--static-sweep", "none", "--preset", "smoke", *sets,
           "--jobs", "2", "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    two = json.loads((tmp_path / "two" / "grid.json").read_text())
    assert [r["test"] for r in two["runs"]] == [r["test"] for r in one["runs"]]


def test_affinity_matrix_sign_convention_and_zero_diagonal():
    def score(tasks, seed, **metrics):
        return {"tasks": tasks, "seed": seed, "metrics": metrics}

    scores = [
        score(["click"], 0, click_auc=0.80), score(["click"], 1, click_auc=0.82),
        score(["rating"], 0, rating_rmse=1.00), score(["rating"], 1, rating_rmse=1.02),
        score(["click", "rating"], 0, click_auc=0.83, rating_rmse=0.95),
        score(["click", "rating"], 1, click_auc=0.84, rating_rmse=0.99),
        score(["click", "rating"], 2, click_auc=0.99, rating_rmse=0.10),  # no alone run for seed 2: ignored
    ]
    m = affinity_matrix(scores, ["click", "rating"])
    assert m["columns"] == ["click", "rating", "all"]
    assert [r["key"] for r in m["rows"]] == ["click_auc", "rating_rmse"]
    assert m["cells"]["click_auc"]["click"] == {"mean": 0.0, "std": 0.0, "n": 2}
    assert m["cells"]["rating_rmse"]["rating"]["mean"] == 0.0
    helps = m["cells"]["click_auc"]["rating"]  # together 0.83, 0.84 vs alone 0.80, 0.82: +0.03, +0.02
    assert helps["mean"] == pytest.approx(0.025) and helps["std"] == pytest.approx(statistics.stdev([0.03, 0.02]))
    lower_rmse = m["cells"]["rating_rmse"]["click"]  # RMSE 1.00 -> 0.95, 1.02 -> 0.99: alone - together > 0
    assert lower_rmse["mean"] == pytest.approx(0.04) and lower_rmse["n"] == 2
    assert m["cells"]["click_auc"]["all"] == helps  # two tasks: all = the pair
    assert m["alone"]["click_auc"]["mean"] == pytest.approx(0.81)


def test_affinity_end_to_end(tmp_path, prepared):
    out = tmp_path / "aff"
    report = run_affinity(str(prepared), "click,like,rating", "mmoe", "0", out=out, preset="smoke",
                          overrides=FAST, log=lambda m: None)
    assert len(report["runs"]) == 3 + 3 + 1
    for name in ("affinity.json", "affinity.md", "affinity.png"):
        assert (out / name).exists(), name
    m = json.loads((out / "affinity.json").read_text())["matrix"]
    assert [r["key"] for r in m["rows"]] == ["click_auc", "like_auc", "like_among_clicks_auc", "rating_rmse"]
    for row in m["rows"]:
        assert m["cells"][row["key"]][row["task"]]["mean"] == 0.0
        assert m["alone"][row["key"]]["mean"] is not None  # like alone still gets like-among-clicks AUC
        assert all(math.isfinite(m["cells"][row["key"]][c]["mean"]) for c in m["columns"])
    like_alone = next(r for r in report["runs"] if r["tags"]["tasks"] == ["like"])
    assert set(like_alone["test"]) == {"like", "like_among_clicks"}
    assert "positive = j helps i" in (out / "affinity.md").read_text()


def test_summarise_diagnostics_of_a_real_run(tmp_path, prepared):
    from recsys.config import load_config
    from recsys.train import train

    run = tmp_path / "run"
    config = load_config("smoke", {**FAST, "dataset": str(prepared), "model": "ple", "max_steps": 6,
                                   "weighting": "uncertainty"})
    train(config, run, log=lambda m: None)
    summary = summarise_diagnostics(run)
    assert summary["steps"] == 6 and summary["epochs"] == 1
    assert set(summary["grad_cosine"]) == {"click|like", "click|rating", "like|rating"}
    for c in summary["grad_cosine"].values():
        assert math.isfinite(c["mean"]) and -1.0 <= c["mean"] <= 1.0 and 0.0 <= c["negative_fraction"] <= 1.0
    assert set(summary["weights"]["last_epoch"]) == {"click", "like", "rating"}
    for task, gate in summary["gates"].items():
        assert sum(gate["share"]) == pytest.approx(1.0) and 0.0 <= gate["entropy"] <= 1.0
        assert len(gate["labels"]) == gate["experts"] == len(gate["share"]) and f"{task}/0" in gate["labels"]


def test_summarise_diagnostics_numbers_and_a_cut_last_line(tmp_path):
    records = [
        {"kind": "step", "step": 0, "epoch": 0, "loss": {}, "weight": {"click": 1.0, "like": 3.0},
         "grad_cosine": {"click|like": -0.5}, "gates": {"click": [0.5, 0.5]}},
        {"kind": "epoch", "step": 1, "epoch": 0, "valid": {}},
        {"kind": "step", "step": 1, "epoch": 1, "loss": {}, "weight": {"click": 2.0, "like": 1.0},
         "grad_cosine": {"click|like": 0.25}, "gates": {"click": [1.0, 0.0]}},
        {"kind": "step", "step": 2, "epoch": 1, "loss": {}, "weight": {"click": 4.0, "like": 1.0},
         "grad_cosine": {"click|like": 0.75}, "gates": {"click": [0.5, 0.5]}},
    ]
    lines = [json.dumps(r) for r in records] + ['{"kind": "step", "st']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    s = summarise_diagnostics(tmp_path)
    cos = s["grad_cosine"]["click|like"]
    assert cos["mean"] == pytest.approx(1 / 6) and cos["negative_fraction"] == pytest.approx(1 / 3)
    assert cos["last_epoch_mean"] == pytest.approx(0.5) and cos["n"] == 3
    assert s["weights"]["last_epoch"] == {"click": 3.0, "like": 1.0}
    gate = s["gates"]["click"]
    assert gate["share"] == pytest.approx([0.75, 0.25]) and gate["labels"] is None
    assert gate["entropy"] == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2))


def test_strategy_effects_pairs_by_model_and_seed():
    def rec(label, model, seed, click):
        test = {"click": {"auc": click, "user_auc": None}}
        return {"tags": {"label": label, "model": model, "seed": seed, "sweep_a": None}, "test": test}

    records = [rec("equal", "m", 0, 0.700), rec("equal", "m", 1, 0.710),
               rec("dwa", "m", 0, 0.701), rec("dwa", "m", 1, 0.712)]
    effects = strategy_effects(records, dataset="toy")
    d = effects["rows"][0]["diffs"]["click_auc"]
    assert d["mean"] == pytest.approx(0.0015) and d["n"] == 2 and d["within_noise"]
    noise = math.sqrt((statistics.variance([0.70, 0.71]) + statistics.variance([0.701, 0.712])) / 2)
    assert effects["noise"]["click_auc"] == pytest.approx(noise)
    assert any("toy" in s and "click AUC by at most 0.0015" in s and "within seed noise" in s
               for s in effects["sentences"])


def test_pareto_front():
    assert pareto_front([(0.7, 0.6), (0.72, 0.58), (0.69, 0.59), (0.7, 0.6)]) == [True, True, False, True]
    assert pareto_front([]) == []


@pytest.mark.parametrize("argv, bad", [
    (["grid", "--models", "mmoe,nope"], "nope"),
    (["grid", "--weightings", "equal,magic"], "magic"),
    (["grid", "--models", ""], "--models"),
    (["grid", "--seeds", "0,,1"], "--seeds"),
    (["grid", "--seeds", "0,-1"], "-1"),
    (["grid", "--static-sweep", "0.5,1.5"], "1.5"),
    (["grid", "--set", "model=ple"], "--models"),
    (["grid", "--set", 'model_options={"nope": 1}'], "nope"),
    (["grid", "--preset", "huge"], "huge"),
    (["affinity", "--tasks", "click,dance"], "dance"),
    (["affinity", "--tasks", "click,watch"], "watch"),  # a known task the data set lacks
    (["affinity", "--tasks", "click"], "two tasks"),
    (["affinity", "--model", "transformer"], "transformer"),
])
def test_bad_inputs_fail_before_any_training(tmp_path, prepared, monkeypatch, argv, bad):
    calls = _counting_train(monkeypatch)
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    defaults = [] if "--preset" in argv else ["--preset", "smoke"]
    args = parser.parse_args(["experiment", *argv, *defaults, "--dataset", str(prepared),
                              "--out", str(tmp_path / "x")])
    with pytest.raises(ConfigError) as err:
        args.func(args)
    assert bad in str(err.value) and calls == []
    assert not (tmp_path / "x" / "runs").exists()


def test_unprepared_dataset_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no prepared data set"):
        run_grid(str(tmp_path / "nothing"), "mmoe", "equal", "0", out=tmp_path / "x", log=lambda m: None)


def test_registering_the_commands_does_not_import_torch():
    code = ("import argparse, sys; from recsys.experiments import add_commands; p = argparse.ArgumentParser(); "
            "add_commands(p.add_subparsers()); p.format_help(); "
            "sys.exit(1 if any(m in sys.modules for m in ('torch', 'polars', 'matplotlib')) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
