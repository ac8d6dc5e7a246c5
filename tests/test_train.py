"""Training: resume after SIGKILL reproduces an uninterrupted run exactly; non-finite losses
stop with a clear error; published weights are verified; early stopping; the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from recsys.checkpoint import load_published
from recsys.cli import main
from recsys.config import load_config
from recsys.errors import CheckpointError, ConfigError
from recsys.train import TrainingError, train


def _config(prepared, **over):
    base = {"dataset": str(prepared), "model": "mmoe", "weighting": "uncertainty", "epochs": 2,
            "batch_size": 64, "checkpoint_every": 3, "diagnostics_every": 2, "patience": 5,
            "model_options": {"dropout": 0.1}, "device": "cpu"}
    return load_config("default", {**base, **over})


def _steps(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _kill_then_resume(tmp_path, prepared, *, kill_at, cli=(), **over):
    """Train `over` uninterrupted into ``full``; run the same config through the CLI into ``cut``,
    SIGKILLed after step `kill_at`, then resume it. Returns (full result, resumed result, full
    published weights, resumed published weights, full dir, cut dir)."""
    cfg = _config(prepared, **over)
    full = tmp_path / "full"
    full_result = train(cfg, full, log=lambda m: None)
    _, expected = load_published(full)

    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "recsys", "train", "--out", str(cut), "--dataset", str(prepared),
           "--set", "batch_size=64", "--set", "checkpoint_every=3", "--set", "diagnostics_every=2",
           "--set", "patience=5", "--set", 'model_options={"dropout": 0.1}', "--epochs", "2",
           "--device", "cpu", "--threads", "1", *cli]
    env = {**os.environ, "RECSYS_FAULT_KILL_AT_STEP": str(kill_at)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr  # killed by SIGKILL
    assert not (cut / "model.safetensors").exists()
    result = train(_config(prepared, **{**over, "threads": 1}), cut, resume=True, log=lambda m: None)
    _, got = load_published(cut)
    assert got.keys() == expected.keys()
    for k in expected:
        assert torch.equal(got[k], expected[k]), k
    return full_result, result, full, cut


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, prepared):
    # killed mid-epoch, 1 step after a checkpoint
    full_result, result, full, cut = _kill_then_resume(tmp_path, prepared, kill_at=7)
    assert result.steps == full_result.steps and result.best_epoch == full_result.best_epoch
    full_steps = [r for r in _steps(full) if r["kind"] == "step"]
    cut_steps = [r for r in _steps(cut) if r["kind"] == "step"]
    assert [r["step"] for r in cut_steps] == [r["step"] for r in full_steps]
    assert [r["loss"] for r in cut_steps] == [r["loss"] for r in full_steps]


def test_streamed_sigkill_then_resume_equals_uninterrupted(tmp_path, prepared):
    # 885 training rows in windows of 100, blocks of 4 windows, 14 batches of 64 an epoch: the kill
    # at step 19 resumes from the checkpoint of step 18, epoch 1 batch 4, inside the first block
    full_result, result, full, cut = _kill_then_resume(tmp_path, prepared, kill_at=19,
                                                       cli=("--stream-window", "100"),
                                                       stream_window=100, threads=1)
    assert result.steps == full_result.steps == 28
    full_steps = [r for r in _steps(full) if r["kind"] == "step"]
    assert [r["loss"] for r in _steps(cut) if r["kind"] == "step"] == [r["loss"] for r in full_steps]


def test_weights_grad_cosine_and_gates_are_logged(tmp_path, prepared):
    run = tmp_path / "run"
    train(_config(prepared, epochs=1), run, log=lambda m: None)
    steps = [r for r in _steps(run) if r["kind"] == "step"]
    assert all(set(r["weight"]) == {"click", "like", "rating"} for r in steps)
    assert all(v >= 0 for r in steps for v in r["weight"].values())
    diag = [r for r in steps if "grad_cosine" in r]
    assert diag and all(-1.0 <= v <= 1.0 for r in diag for v in r["grad_cosine"].values())
    assert all(abs(sum(r["gates"]["click"]) - 1.0) < 1e-5 for r in diag)
    epochs = [r for r in _steps(run) if r["kind"] == "epoch"]
    assert len(epochs) == 1 and 0.0 <= epochs[0]["valid"]["click_auc"] <= 1.0


def test_non_finite_loss_names_step_and_task(tmp_path, prepared, monkeypatch):
    import recsys.train as T

    real = T.task_losses

    def poisoned(out, y, tasks, esmm=False):
        losses = real(out, y, tasks, esmm=esmm)
        if poisoned.calls == 4:
            losses["like"] = losses["like"] * float("nan")
        poisoned.calls += 1
        return losses

    poisoned.calls = 0
    monkeypatch.setattr(T, "task_losses", poisoned)
    with pytest.raises(TrainingError, match=r"step 4 .*task 'like' is nan"):
        train(_config(prepared), tmp_path / "run", log=lambda m: None)


def test_resume_with_other_config_is_refused(tmp_path, prepared):
    run = tmp_path / "run"
    train(_config(prepared, epochs=1), run, log=lambda m: None)
    with pytest.raises(ConfigError, match="different config"):
        train(_config(prepared, epochs=1, lr=0.01), run, resume=True, log=lambda m: None)
    with pytest.raises(TrainingError, match="already holds a run"):
        train(_config(prepared, epochs=1), run, log=lambda m: None)


def test_tampered_weights_are_refused(tmp_path, prepared):
    run = tmp_path / "run"
    train(_config(prepared, epochs=1, max_steps=2), run, log=lambda m: None)
    blob = bytearray((run / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (run / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="does not match the manifest"):
        load_published(run)


def test_checkpoints_load_with_weights_only(tmp_path, prepared, monkeypatch):
    run = tmp_path / "run"
    train(_config(prepared, epochs=1, max_steps=4), run, log=lambda m: None)
    seen = []
    real = torch.load

    def spy(*a, **k):
        seen.append(k.get("weights_only"))
        return real(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    from recsys.checkpoint import load_checkpoint

    state = load_checkpoint(run / "checkpoint.pt")
    assert seen == [True] and state["step"] == 4


def test_early_stopping(tmp_path, prepared):
    result = train(_config(prepared, epochs=30, patience=1, lr=0.05), tmp_path / "run", log=lambda m: None)
    assert result.stopped_early and result.epochs < 30 and result.best_epoch == result.epochs - 2


def test_cli_train_and_evaluate(tmp_path, prepared, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--dataset", str(prepared), "--out", str(run), "--device", "cpu"]) == 0
    assert "published" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((run / "eval_test.json").read_text())
    assert printed == report
    assert set(report) >= {"model", "popularity", "random"}
    assert 0 <= report["model"]["click"]["auc"] <= 1 and "user_auc_skipped" in report["model"]["click"]
    assert main(["train", "--dataset", str(prepared), "--out", str(tmp_path / "x"), "--model", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recsys: error: ") and "nope" in err and "Traceback" not in err


def test_a_subset_of_tasks_trains_and_is_measured_with_all_labels(tmp_path, prepared):
    from recsys.evaluate import evaluate_run

    run = tmp_path / "like_only"
    train(_config(prepared, tasks=["like"], epochs=1, max_steps=5), run, log=lambda m: None)
    report = evaluate_run(run)
    assert set(report["model"]) == {"like", "like_among_clicks"}  # click labels still select the clicked rows
    with pytest.raises(ConfigError, match="watch"):
        train(_config(prepared, tasks=["watch"]), tmp_path / "w", log=lambda m: None)


def test_bf16_mixed_precision_trains_to_the_same_quality(tmp_path, prepared):
    """--precision bf16 runs the forward pass under bfloat16 autocast (the GPU path uses the same
    code with device_type cuda): losses stay finite float32, the published weights are float32,
    the outputs actually differ from fp32 (autocast is on), and validation AUC matches fp32."""
    fp32 = train(_config(prepared, epochs=3), tmp_path / "fp32", log=lambda m: None)
    bf16 = train(_config(prepared, epochs=3, precision="bf16"), tmp_path / "bf16", log=lambda m: None)
    _, state = load_published(tmp_path / "bf16")
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    _, ref = load_published(tmp_path / "fp32")
    assert any(not torch.equal(state[k], ref[k]) for k in ref if ref[k].is_floating_point())
    assert all(isinstance(v, float) for r in _steps(tmp_path / "bf16") if r["kind"] == "step" for v in r["loss"].values())
    assert bf16.valid["click_auc"] == pytest.approx(fp32.valid["click_auc"], abs=0.03)
    with pytest.raises(ConfigError, match="precision"):
        _config(prepared, precision="fp16")
