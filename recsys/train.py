"""The multi-task training loop: seeded, resumable, early-stopped, logged.

The optimisation recipe of the seed notes, with masks: sample a batch (a slice of a seeded
permutation), compute each task's loss on the rows where its label is observed, let the
weighting strategy turn the losses into gradients, step. Per step the task losses and weights
go to ``metrics.jsonl``; every `diagnostics_every` steps the cosine between task gradients on
the shared parameters (negative transfer, measured) and the experts' gate utilisation; per
epoch the validation metrics.

A checkpoint (model, optimiser, weighting state, RNG state, position in the epoch, early-
stopping state) is written atomically every `checkpoint_every` steps and at every epoch end.
Batches are a function of (seed, epoch), so a run killed at any point and resumed with
``resume=True`` ends with exactly the weights of an uninterrupted run. At the end the best
epoch's weights are published as ``model.safetensors`` with a manifest of SHA-256 hashes.

With ``stream_window`` set, the training and validation splits are read from parquet a window
of rows at a time (`recsys.data.stream`): memory does not grow with the data set, and batches
are still a function of (seed, epoch), so resuming is as exact.

Started by ``torchrun``, each process trains on its slice of every global batch and gradients
are averaged (`recsys.distributed`); rank 0 alone writes the run directory.

Run directory:
    config.json  schema.json  metrics.jsonl  checkpoint.pt  model.safetensors  manifest.json
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recsys import distributed
from recsys.checkpoint import CHECKPOINT, load_checkpoint, publish, save_checkpoint
from recsys.config import TrainConfig, from_dict
from recsys.data.fields import TASK_KINDS
from recsys.data.stream import StreamedSplit
from recsys.data.tensors import TensorData, batch_indices, load_schema, load_split
from recsys.errors import CheckpointError, ConfigError, RecsysError
from recsys.evaluate import predict, validation_metrics
from recsys.io import atomic_write_json, atomic_write_text
from recsys.models.registry import build_model
from recsys.mtl.diagnostics import gate_utilisation, grad_cosine
from recsys.mtl.losses import observed_counts, task_losses
from recsys.mtl.registry import build_weighting


#: Fault injection for the resume test: the process SIGKILLs itself after this global step.
_KILL_AT_STEP = int(os.environ.get("RECSYS_FAULT_KILL_AT_STEP", "0"))


class TrainingError(RecsysError):
    """Training cannot go on (a non-finite loss, a run directory in the way)."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs: int
    best_epoch: int
    best_score: float
    stopped_early: bool
    valid: dict[str, Any]
    seconds: float


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but torch sees no CUDA device on this machine; use --device cpu or auto")
    return torch.device(name)


def resolve_dataset(dataset: str, data_dir: str | Path = "data") -> Path:
    """A prepared data set's directory: a path, or a name under ``DATA_DIR/prepared``."""
    path = Path(dataset)
    if (path / "schema.json").exists():
        return path
    named = Path(data_dir) / "prepared" / dataset
    if (named / "schema.json").exists():
        return named
    hint = f"recsys data prepare {dataset}" if dataset.startswith("ml-") else "recsys data synth"
    raise ConfigError(f"no prepared data set {dataset!r} (looked in {path} and {named}); run `{hint}` first")


class Trainer:
    """One training run in `run_dir`.

    Args:
        config: the run's configuration.
        run_dir: where config, logs, checkpoints and the published model go.
        data_dir: cache root used to resolve ``config.dataset`` by name.
        log: receives one-line progress messages when stderr is not a terminal.
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, *, data_dir: str | Path = "data",
                 log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        if config.threads:
            torch.set_num_threads(config.threads)
        # under torchrun: this process's rank and device (see recsys.distributed); else a no-op
        self.dist = distributed.init(config.device, batch_size=config.batch_size)
        self.device = self.dist.device or resolve_device(config.device)
        if not self.dist.is_main:
            self.log = lambda m: None
        self.data_path = resolve_dataset(config.dataset, data_dir)
        self.schema = load_schema(self.data_path)
        self.tasks = tuple(config.tasks) or self.schema.tasks
        missing = [t for t in self.tasks if t not in self.schema.tasks]
        if missing:
            raise ConfigError(f"task(s) {missing} have no labels in {self.data_path}; it has {', '.join(self.schema.tasks)}")
        # columns of y that hold this run's tasks (a run may train on a subset of the data set's)
        self.task_cols = torch.tensor([self.schema.tasks.index(t) for t in self.tasks])
        self.train_data: TensorData | StreamedSplit
        self.valid_data: TensorData | StreamedSplit
        if config.stream_window:  # splits larger than memory: read from parquet a window at a time
            self.train_data = StreamedSplit(self.data_path, "train", window=config.stream_window, device=self.device)
            self.valid_data = StreamedSplit(self.data_path, "valid", window=config.stream_window, device=self.device)
        else:
            self.train_data = load_split(self.data_path, "train").to(self.device)
            self.valid_data = load_split(self.data_path, "valid").to(self.device)
        torch.manual_seed(config.seed)
        self.model = build_model(config.model, self.schema, self.tasks, **config.model_options).to(self.device)
        self.model.init_output_bias(_initial_outputs(self.train_data, self.tasks, config.esmm))
        self.weighting = build_weighting(config.weighting, self.tasks, **config.weighting_options).to(self.device)
        self.shared = self.model.shared_parameters()
        params = list(self.model.parameters()) + list(self.weighting.extra_parameters())
        self.params = params
        self.optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        if self.dist.enabled:
            if len(self.valid_data) < self.dist.world:
                raise ConfigError(f"{self.data_path} has {len(self.valid_data)} validation rows, fewer than the "
                                  f"{self.dist.world} processes that share them; use fewer processes")
            self.dist.broadcast_(distributed.tensors_of([self.model, self.weighting]))  # same start everywhere
            self.dist.fork_rng(config.seed, 0)
        self.use_position = self.train_data.has_position and self.schema.num_positions > 0
        self.steps_per_epoch = math.ceil(len(self.train_data) / config.batch_size)
        # progress (all of it is checkpointed)
        self.epoch, self.batch, self.step = 0, 0, 0
        self.best_score, self.best_epoch, self.bad_epochs = -math.inf, -1, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epoch_loss_sum: dict[str, float] = dict.fromkeys(self.tasks, 0.0)
        self.epoch_loss_n: dict[str, int] = dict.fromkeys(self.tasks, 0)
        self.history: list[dict[str, Any]] = []
        self.finished = False
        self.stopped_early = False

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        return {
            "config": json.dumps(self.config.to_json(), sort_keys=True),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "weighting": self.weighting.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "best_score": self.best_score, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
            "best_state": self.best_state or {},
            "epoch_loss_sum": self.epoch_loss_sum, "epoch_loss_n": self.epoch_loss_n,
            "history": json.dumps(self.history), "finished": self.finished, "stopped_early": self.stopped_early,
        }

    def restore(self, state: dict[str, Any]) -> None:
        saved = from_dict(json.loads(state["config"]))
        if saved != self.config:
            diff = sorted(k for k, v in saved.to_json().items() if self.config.to_json().get(k) != v)
            raise ConfigError(f"{self.run_dir / CHECKPOINT} was written with a different config (keys {diff}); "
                              "resume with the same options or use a new --out")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.weighting.load_state_dict(state["weighting"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.best_score, self.best_epoch, self.bad_epochs = state["best_score"], state["best_epoch"], state["bad_epochs"]
        self.best_state = state["best_state"] or None
        self.epoch_loss_sum, self.epoch_loss_n = state["epoch_loss_sum"], state["epoch_loss_n"]
        self.history = json.loads(state["history"])
        self.finished, self.stopped_early = state["finished"], state["stopped_early"]
        self.dist.fork_rng(self.config.seed, self.step)

    def checkpoint(self) -> None:
        if self.dist.is_main:  # every rank holds the same state; rank 0 writes it
            save_checkpoint(self.run_dir / CHECKPOINT, self.state())

    # ------------------------------------------------------------------ the loop

    def fit(self, *, resume: bool = False) -> TrainResult:
        start = time.perf_counter()
        self._prepare_run_dir(resume)
        progress = _Progress(self.steps_per_epoch, self.log, quiet=not self.dist.is_main)
        log_path = self.run_dir / "metrics.jsonl" if self.dist.is_main else os.devnull  # rank 0 logs
        with open(log_path, "a", encoding="utf-8") as metrics:
            while not self.finished:
                self._run_epoch(metrics, progress)
        progress.close()
        if self.dist.is_main:
            self._publish()
        self.dist.barrier()  # every rank leaves once the model is published
        valid = self.history[self.best_epoch] if 0 <= self.best_epoch < len(self.history) else {}
        return TrainResult(self.run_dir, self.step, len(self.history), self.best_epoch, self.best_score,
                           self.stopped_early, valid.get("valid", {}), time.perf_counter() - start)

    def _run_epoch(self, metrics, progress: _Progress) -> None:
        cfg = self.config
        self.model.train()
        batches = self._epoch_batches()
        progress.start(self.epoch, self.batch)
        while self.batch < self.steps_per_epoch:
            record = self._train_step(next(batches))
            self.batch += 1
            self.step += 1
            metrics.write(json.dumps(record) + "\n")
            progress.update(record)
            if _KILL_AT_STEP and self.step == _KILL_AT_STEP:
                metrics.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            if cfg.max_steps and self.step >= cfg.max_steps:
                break
            if self.step % cfg.checkpoint_every == 0:
                metrics.flush()
                self.checkpoint()
        self._end_epoch(metrics)
        metrics.flush()
        self.checkpoint()

    def _epoch_batches(self) -> Iterator[TensorData]:
        """The epoch's (global) batches from `self.batch` on, a function of (seed, epoch) only."""
        cfg = self.config
        if isinstance(self.train_data, StreamedSplit):
            return self.train_data.batches(cfg.batch_size, seed=cfg.seed, epoch=self.epoch, start=self.batch)
        order = batch_indices(len(self.train_data), cfg.batch_size, seed=cfg.seed, epoch=self.epoch)
        return (self.train_data.subset(idx.to(self.device)) for idx in itertools.islice(order, self.batch, None))

    def _train_step(self, batch: TensorData) -> dict[str, Any]:
        batch = self.dist.shard(batch)  # this rank's rows of the global batch
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"):
            out = self.model(batch.x, batch.position if self.use_position else None)
        out = {t: v.float() for t, v in out.items()}  # losses and the weighting in float32
        y = batch.y[:, self.task_cols]
        if self.dist.enabled:  # values: the global losses; gradients: averaged to the global ones below
            counts = self.dist.all_reduce_sum(observed_counts(y, self.tasks, esmm=self.config.esmm))
            losses = self.dist.global_losses(
                task_losses(out, y, self.tasks, esmm=self.config.esmm, denominators=counts))
        else:
            losses = task_losses(out, y, self.tasks, esmm=self.config.esmm)
        values = {t: float(v.detach()) for t, v in losses.items()}
        for task, value in values.items():
            if not math.isfinite(value):
                raise TrainingError(
                    f"step {self.step} (epoch {self.epoch}, batch {self.batch}): loss of task {task!r} is {value}; "
                    "lower --lr, or resume from the last checkpoint with other options"
                )
        record: dict[str, Any] = {"kind": "step", "step": self.step, "epoch": self.epoch, "loss": values}
        diagnose = self.config.diagnostics_every and self.step % self.config.diagnostics_every == 0
        if diagnose and len(losses) > 1 and self.dist.is_main:  # on rank 0's shard only
            record["grad_cosine"] = grad_cosine(losses, self.shared)
            gates = getattr(self.model, "last_gates", None)
            if gates:
                record["gates"] = gate_utilisation(gates)
        self.optimizer.zero_grad(set_to_none=True)
        record["weight"] = self.weighting.backward(losses, self.shared, step=self.step)
        self.dist.average_gradients(self.params)
        self.optimizer.step()
        for task, value in values.items():
            self.epoch_loss_sum[task] += value
            self.epoch_loss_n[task] += 1
        return record

    def _end_epoch(self, metrics) -> None:
        cfg = self.config
        train_loss = {t: self.epoch_loss_sum[t] / max(1, self.epoch_loss_n[t]) for t in self.tasks}
        self.weighting.epoch_end({t: v for t, v in train_loss.items() if self.epoch_loss_n[t]})
        valid = self._validate()
        score = valid["score"]
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = score, self.epoch, 0
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
        else:
            self.bad_epochs += 1
        record = {"kind": "epoch", "step": self.step, "epoch": self.epoch, "train_loss": train_loss,
                  "valid": valid, "best": improved}
        self.history.append(record)
        metrics.write(json.dumps(record) + "\n")
        self.log(f"epoch {self.epoch}: valid score {score:.4f} " + " ".join(
            f"{k}={v:.4f}" for k, v in valid.items() if isinstance(v, float) and k != "score")
            + (" (best)" if improved else ""))
        self.epoch += 1
        self.batch = 0
        self.epoch_loss_sum = dict.fromkeys(self.tasks, 0.0)
        self.epoch_loss_n = dict.fromkeys(self.tasks, 0)
        if self.bad_epochs >= cfg.patience:
            self.finished, self.stopped_early = True, True
        elif self.epoch >= cfg.epochs or (cfg.max_steps and self.step >= cfg.max_steps):
            self.finished = True

    def _validate(self) -> dict[str, Any]:
        """`validation_metrics` of the model; with several processes each predicts its shard of
        the validation rows and every rank scores the gathered predictions, so all agree (a
        streamed split is predicted whole by every rank: the same weights give the same score)."""
        d, esmm = self.valid_data, self.config.esmm
        if not self.dist.enabled or not isinstance(d, TensorData):
            return validation_metrics(self.model, d, self.tasks, esmm=esmm)
        local = predict(self.model, self.dist.shard(d), self.tasks, esmm=esmm)
        pred = {k: self.dist.gather_rows(torch.from_numpy(v).to(self.device), len(d)).cpu().numpy()
                for k, v in local.items()}
        return validation_metrics(self.model, d, self.tasks, esmm=esmm, pred=pred)

    # ------------------------------------------------------------------ run directory

    def _prepare_run_dir(self, resume: bool) -> None:
        ckpt = self.run_dir / CHECKPOINT
        seen = self.dist.count(ckpt.exists())  # ranks that see the checkpoint (0 or 1 in one process)
        if 0 < seen < self.dist.world:
            raise CheckpointError(f"only {seen} of {self.dist.world} processes can read {ckpt}; --out must be on "
                                  "storage that every machine of a distributed run shares")
        if ckpt.exists() and not resume:
            raise TrainingError(f"{self.run_dir} already holds a run (checkpoint.pt); pass --resume to continue it "
                                "or choose another --out")
        resumed = resume and ckpt.exists()
        if resumed:  # every rank reads rank 0's checkpoint
            self.restore(load_checkpoint(ckpt))
            self.log(f"resuming {self.run_dir} at epoch {self.epoch}, step {self.step}")
        if not self.dist.is_main:
            return  # rank 0 alone writes the run directory
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resumed:
            _truncate_log(self.run_dir / "metrics.jsonl", self.step)
        else:
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
        atomic_write_json(self.run_dir / "config.json", self.config.to_json())
        atomic_write_text(self.run_dir / "schema.json", self.schema.dumps())

    def _publish(self) -> None:
        state = self.best_state or {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        publish(self.run_dir, state, extra_files=("schema.json", "config.json"), manifest={
            "model": self.model.spec(),
            "tasks": list(self.tasks),
            "esmm": self.config.esmm,
            "dataset": str(self.data_path.resolve()),
            "best_epoch": self.best_epoch,
            "best_valid": self.history[self.best_epoch]["valid"] if 0 <= self.best_epoch < len(self.history) else {},
            "steps": self.step,
        })


def _initial_outputs(data: TensorData | StreamedSplit, tasks: tuple[str, ...], esmm: bool) -> dict[str, float]:
    """Start each output at its training mean (log-odds for binary tasks): faster, steadier starts."""
    out = {}
    for task, mean in data.label_means(tasks, esmm=esmm).items():
        if TASK_KINDS[task] == "binary":
            mean = min(max(mean, 1e-4), 1 - 1e-4)
            out[task] = math.log(mean / (1 - mean))
        else:
            out[task] = mean
    return out


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint we resume from (they will be redone)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        if (rec["kind"] == "step" and rec["step"] < step) or (rec["kind"] == "epoch" and rec["step"] <= step):
            keep.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in keep))


class _Progress:
    """A tqdm bar on a terminal; plain lines every ~10% of an epoch otherwise; nothing if `quiet`."""

    def __init__(self, steps_per_epoch: int, log: Callable[[str], None], *, quiet: bool = False) -> None:
        self.total, self.log = steps_per_epoch, (lambda m: None) if quiet else log
        self.tty = sys.stderr.isatty() and not quiet
        self.bar = None
        self.every = max(1, steps_per_epoch // 10)
        self.done = 0
        self.epoch = 0

    def start(self, epoch: int, done: int) -> None:
        self.epoch, self.done = epoch, done
        if self.tty:
            from tqdm import tqdm

            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=self.total, initial=done, desc=f"epoch {epoch}", leave=False, file=sys.stderr)

    def update(self, record: dict[str, Any]) -> None:
        self.done += 1
        loss = " ".join(f"{t}={v:.4f}" for t, v in record["loss"].items())
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(loss, refresh=False)
        elif self.done % self.every == 0:
            self.log(f"epoch {self.epoch} step {self.done}/{self.total}: {loss}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(config: TrainConfig, run_dir: str | Path, *, data_dir: str | Path = "data", resume: bool = False,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Train (or resume) a ranker; see `Trainer`. Under torchrun, every process calls this."""
    trainer = Trainer(config, run_dir, data_dir=data_dir, log=log)
    try:
        return trainer.fit(resume=resume)
    finally:
        trainer.dist.close()
