"""Distributed training: 2 CPU processes under torchrun (gloo) end where 1 process ends.

The equivalence tests launch ``python -m torch.distributed.run --standalone --nproc-per-node 2
-m recsys train ...`` on the tiny prepared data set and compare with `train` in this process on
the same global batch. Measured on this machine after 42 steps (3 epochs of batch 64, MMoE,
dropout 0, one thread per process): max |w_1proc - w_2proc| over every published weight is
1.9e-06 for ``equal`` and 2.1e-06 for ``uncertainty``; per-step logged losses differ by at most
3.6e-07 and the validation scores are equal. The differences are float summation order (a batch
summed in two halves, gradients averaged), which Adam's normalisation carries into the weights;
the tests allow 1e-5. Each launch takes about 7 s on 2 shared cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from recsys.checkpoint import load_checkpoint, load_published
from recsys.cli import main
from recsys.config import load_config
from recsys.distributed import Dist, init
from recsys.errors import ConfigError
from recsys.train import train

TOLERANCE = 1e-5
OPTIONS = {"epochs": 3, "batch_size": 64, "checkpoint_every": 5, "diagnostics_every": 4, "patience": 5,
           "model_options": {"dropout": 0.0}, "device": "cpu", "threads": 1}


def _torchrun(prepared, out, weighting, *, nproc=2, extra=(), env=None):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "recsys", "train", "--dataset", str(prepared), "--out", str(out), "--weighting", weighting,
           "--epochs", "3", "--batch-size", "64", "--device", "cpu", "--threads", "1",
           "--set", "checkpoint_every=5", "--set", "diagnostics_every=4", "--set", "patience=5",
           "--set", 'model_options={"dropout": 0.0}', *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _max_weight_diff(a, b) -> float:
    _, wa = load_published(a)
    _, wb = load_published(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.mark.parametrize("weighting", ["equal", "uncertainty"])
def test_two_processes_match_one_process(tmp_path, prepared, weighting):
    one = tmp_path / "one"
    result = train(load_config("default", {"dataset": str(prepared), "weighting": weighting, **OPTIONS}), one,
                   log=lambda m: None)
    two = tmp_path / "two"
    proc = _torchrun(prepared, two, weighting)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("published") == 1  # rank 0 reports, once

    diff = _max_weight_diff(one, two)
    assert diff < TOLERANCE, diff
    # the run directory is that of a single-process run: the same files, written once
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert (two / "config.json").read_text() == (one / "config.json").read_text()
    rec1, rec2 = _records(one), _records(two)
    assert [(r["kind"], r["step"], sorted(r)) for r in rec1] == [(r["kind"], r["step"], sorted(r)) for r in rec2]
    # logged losses are the global ones, and every rank agreed on the validation score
    steps1 = [r for r in rec1 if r["kind"] == "step"]
    steps2 = [r for r in rec2 if r["kind"] == "step"]
    assert len(steps2) == result.steps == 42
    assert max(abs(a["loss"][t] - b["loss"][t]) for a, b in zip(steps1, steps2) for t in a["loss"]) < TOLERANCE
    epochs1 = [r for r in rec1 if r["kind"] == "epoch"]
    epochs2 = [r for r in rec2 if r["kind"] == "epoch"]
    assert [r["valid"]["score"] for r in epochs2] == pytest.approx([r["valid"]["score"] for r in epochs1], abs=1e-6)
    assert load_checkpoint(two / "checkpoint.pt")["step"] == 42
    if weighting == "uncertainty":  # the strategy's own parameters were averaged too
        s1 = load_checkpoint(one / "checkpoint.pt")["weighting"]["log_vars"]
        s2 = load_checkpoint(two / "checkpoint.pt")["weighting"]["log_vars"]
        assert torch.allclose(s1, s2, atol=TOLERANCE) and not torch.equal(s2, torch.zeros_like(s2))


@pytest.mark.slow
def test_a_one_process_checkpoint_resumes_on_two_processes(tmp_path, prepared):
    """Every rank reads rank 0's checkpoint; the global batch does not depend on the world size."""
    full = tmp_path / "full"
    train(load_config("default", {"dataset": str(prepared), **OPTIONS}), full, log=lambda m: None)
    cut = tmp_path / "cut"
    proc = _torchrun(prepared, cut, "uncertainty", nproc=1, env={"RECSYS_FAULT_KILL_AT_STEP": "7"})
    assert proc.returncode != 0 and not (cut / "model.safetensors").exists()
    proc = _torchrun(prepared, cut, "uncertainty", extra=["--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _max_weight_diff(full, cut) < TOLERANCE
    assert [r["step"] for r in _records(cut) if r["kind"] == "step"] == list(range(42))


def test_single_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = init("cpu", batch_size=1)
    assert d == Dist() and not d.enabled and d.is_main and d.device is None
    idx = torch.arange(7)
    assert d.shard(idx) is idx and d.gather_rows(idx, 7) is idx and d.count(True) == 1
    losses = {"click": torch.tensor(0.5, requires_grad=True)}
    assert d.global_losses(losses) is losses
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    d.average_gradients([p])
    d.barrier()
    d.close()
    assert p.grad.tolist() == [3.0, 3.0]


def test_user_mistakes_are_config_errors(monkeypatch, tmp_path, prepared, capsys):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match="batch_size 2 is smaller than the 4 processes"):
        init("cpu", batch_size=2)
    if torch.cuda.device_count() < 4:
        with pytest.raises(ConfigError, match="--device cuda with 4 processes on this machine"):
            init("cuda", batch_size=64)
    assert main(["train", "--dataset", str(prepared), "--out", str(tmp_path / "r"), "--batch-size", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recsys: error: batch_size 3") and "Traceback" not in err
