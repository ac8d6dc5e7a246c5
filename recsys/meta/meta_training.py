"""The outer loop: meta-train on warm users' episodes, early-stop on validation new users.

The optimisation recipe of CS330 with users as tasks: sample a batch of users and a support
size K from the shot set, adapt on each user's first K events, take the loss on their later
events (the query rows), and step the meta-parameters with Adam. After every meta-epoch the
adapter is scored on the validation new users (`recsys.meta.selection`); the best epoch's
meta-parameters are kept (the score before any meta-training counts as epoch -1, so
meta-training never ends worse on validation than it started), and training stops after
`patience` epochs without improvement.

Meta-step t's episodes are a function of (seed, t) only, and the checkpoint (written atomically
every `checkpoint_every` steps, at every epoch end and when `stop_after` is reached) holds the
adapter's state, the optimiser's and the early-stopping state, so a run stopped after any step
and resumed ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from recsys.checkpoint import load_checkpoint, save_checkpoint
from recsys.data.episodes import EpisodeBatch, EpisodeSampler
from recsys.errors import CheckpointError, ConfigError

#: A meta-batch's outer loss and the number of its users whose adaptation went non-finite.
EpisodeLoss = Callable[[EpisodeBatch], tuple[Tensor, int]]


@dataclass(frozen=True)
class MetaSchedule:
    """How long and how the outer loop runs.

    Attributes:
        lr: Adam learning rate of the meta-parameters.
        batch: users per meta-step.
        steps_per_epoch: meta-steps between validations.
        max_epochs: upper bound on meta-epochs.
        patience: stop after this many epochs without a better validation score.
        shots: K values sampled (uniformly, per meta-step) for the support sets.
        max_query: query rows per user per episode (the earliest after the support).
        seed: seeds the episodes.
        clip: global-norm clip of the meta-gradient.
        checkpoint_every: meta-steps between checkpoints.
    """

    lr: float = 1e-3
    batch: int = 32
    steps_per_epoch: int = 50
    max_epochs: int = 10
    patience: int = 2
    shots: tuple[int, ...] = (1, 3, 5, 10, 20)
    max_query: int = 100
    seed: int = 0
    clip: float = 10.0
    checkpoint_every: int = 25

    def __post_init__(self) -> None:
        for name in ("batch", "steps_per_epoch", "max_epochs", "max_query", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"meta-training option {name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 1:
            raise ConfigError(f"meta-training option patience must be >= 1, got {self.patience}")
        if not self.shots or any(int(k) < 1 for k in self.shots):
            raise ConfigError(f"meta-training shots must be a non-empty list of K >= 1, got {list(self.shots)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"meta-training lr must be a positive number, got {self.lr}")


class MetaTrainer:
    """Runs the outer loop over `adapter`'s trainable parameters.

    Args:
        adapter: the adapter whose parameters (those with requires_grad) are meta-trained.
        loss: the outer loss of a meta-batch (see `EpisodeLoss`).
        validate: the validation score (higher is better) of the adapter as it is now.
        schedule: the `MetaSchedule`.
        log: progress lines.
    """

    def __init__(self, adapter: nn.Module, loss: EpisodeLoss, validate: Callable[[], float],
                 schedule: MetaSchedule, *, log: Callable[[str], None] = print) -> None:
        self.adapter, self.loss, self.validate, self.schedule, self.log = adapter, loss, validate, schedule, log
        self.device = getattr(adapter, "device", torch.device("cpu"))  # episodes go where the ranker is
        self.params = [p for p in adapter.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=schedule.lr)
        self.step = self.epoch = self.batch_in_epoch = self.bad_epochs = self.skipped = 0
        self.best_score = -math.inf
        self.best_state: dict[str, Tensor] = {}
        self.history: list[dict[str, Any]] = []
        self.finished = False

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        return {"schedule": json.dumps(asdict(self.schedule), sort_keys=True),
                "adapter": self.adapter.state_dict(), "optimizer": self.optimizer.state_dict(),
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "bad_epochs": self.bad_epochs, "skipped": self.skipped, "best_score": self.best_score,
                "best_state": self.best_state, "history": json.dumps(self.history), "finished": self.finished}

    def restore(self, state: dict[str, Any], path: Path) -> None:
        if state.get("schedule") != json.dumps(asdict(self.schedule), sort_keys=True):
            raise CheckpointError(f"{path} was written by a meta-training run with other options; "
                                  "resume with the same adapter options or delete the checkpoint")
        try:
            self.adapter.load_state_dict(state["adapter"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path} does not fit this adapter ({exc})") from exc
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch, self.bad_epochs = state["batch_in_epoch"], state["bad_epochs"]
        self.skipped, self.best_score = state["skipped"], state["best_score"]
        self.best_state, self.history = state["best_state"], json.loads(state["history"])
        self.finished = state["finished"]

    # ------------------------------------------------------------------ the loop

    def run(self, train: EpisodeSampler, *, checkpoint: str | Path | None = None, resume: bool = False,
            stop_after: int | None = None) -> bool:
        """Meta-train until early stopping; returns False if stopped by `stop_after` (resumable)."""
        path = Path(checkpoint) if checkpoint is not None else None
        if path is not None and path.exists():
            if not resume:
                raise CheckpointError(f"{path} already holds a meta-training checkpoint; pass resume=True "
                                      "to continue it or choose another path")
            self.restore(load_checkpoint(path), path)
            self.log(f"meta-training: resuming at step {self.step} (epoch {self.epoch})")
        else:
            self._end_epoch(initial=True)
        s = self.schedule
        while not self.finished:
            while self.batch_in_epoch < s.steps_per_epoch:
                self._meta_step(train)
                if stop_after is not None and self.step >= stop_after:
                    self._save(path)
                    return False
                if path is not None and self.step % s.checkpoint_every == 0:
                    self._save(path)
            self._end_epoch()
            self._save(path)
        if self.best_state:
            self.adapter.load_state_dict(self.best_state)
        return True

    def _meta_step(self, train: EpisodeSampler) -> None:
        s = self.schedule
        g = torch.Generator().manual_seed(s.seed * 1_000_003 + self.step)
        k = int(s.shots[int(torch.randint(len(s.shots), (1,), generator=g))])
        episodes = train.sample(s.batch, k, generator=g, max_query=s.max_query).to(self.device)
        loss, bad = self.loss(episodes)
        self.optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(self.params, s.clip)
            if torch.isfinite(norm):
                self.optimizer.step()
            else:
                self.skipped += 1
        else:
            self.skipped += 1
        if bad:
            self.log(f"meta-step {self.step}: {bad} user(s) with a non-finite inner loop left out of the loss")
        self.step += 1
        self.batch_in_epoch += 1

    def _end_epoch(self, *, initial: bool = False) -> None:
        with torch.no_grad():
            score = float(self.validate())
        improved = math.isfinite(score) and score > self.best_score
        if improved:
            self.best_score, self.bad_epochs = score, 0
            self.best_state = copy.deepcopy({k: v.detach().clone() for k, v in self.adapter.state_dict().items()})
        elif not initial:
            self.bad_epochs += 1
        epoch = -1 if initial else self.epoch
        self.history.append({"epoch": epoch, "step": self.step, "valid": score, "best": improved})
        self.log(f"meta-epoch {epoch}: validation score {score:.4f}" + (" (best)" if improved else "")
                 + (f", {self.skipped} step(s) skipped (non-finite)" if self.skipped else ""))
        if not initial:
            self.epoch += 1
            self.batch_in_epoch = 0
            if self.bad_epochs >= self.schedule.patience or self.epoch >= self.schedule.max_epochs:
                self.finished = True

    def _save(self, path: Path | None) -> None:
        if path is not None:
            save_checkpoint(path, self.state())
