"""Dynamic Weight Average (Liu, Johns & Davison, "End-to-End Multi-Task Learning with
Attention", CVPR'19).

Each task's weight follows the rate at which its loss fell over the last two epochs:

    r_t = L_t(e-1) / L_t(e-2),      w_t = T * softmax(r / temperature)_t

where L_t(e) is task t's mean training loss in epoch e. The first two epochs use w_t = 1.
Because r_t is a ratio, the weights ignore the scale of a loss. A ratio that cannot be formed
(a task unseen in an epoch, a zero loss) counts as 1.

The last two epochs' losses live in a buffer, so a checkpoint restores them.

Example:
    >>> w = DWAWeighting(("click", "like"))
    >>> w.epoch_end({"click": 1.0, "like": 1.0}); w.epoch_end({"click": 0.5, "like": 1.0})
    >>> [round(v, 4) for v in w.current_weights().tolist()]
    [0.8756, 1.1244]
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from recsys.errors import UnknownIdError
from recsys.mtl.base import Weighting, backward_weighted


class DWAWeighting(Weighting):
    """Loss-rate weights, updated at each `epoch_end`.

    Config:
        temperature: softmax temperature (default 2.0, as in the paper).
    """

    name = "dwa"
    defaults = {"temperature": 2.0}

    def __init__(self, tasks: tuple[str, ...], **config: Any) -> None:
        super().__init__(tasks, **config)
        self.temperature = self._check_number("temperature", low=0.0, low_open=True)
        #: [2, T] mean losses of the epoch before last (row 0) and the last epoch (row 1).
        self.history: Tensor
        self.register_buffer("history", torch.full((2, len(self.tasks)), math.nan))
        #: number of epochs recorded so far.
        self.epochs_seen: Tensor
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def epoch_end(self, epoch_losses: dict[str, float]) -> None:
        """Record one epoch's mean training loss of each task (a missing task is NaN)."""
        for task in epoch_losses:
            if task not in self.tasks:
                raise UnknownIdError(f"epoch loss for task {task!r} given to weighting 'dwa' of tasks {list(self.tasks)}")
        latest = torch.tensor([float(epoch_losses.get(t, math.nan)) for t in self.tasks])
        self.history.copy_(torch.stack([self.history[1], latest.to(self.history)]))
        self.epochs_seen += 1

    def current_weights(self) -> Tensor:
        """[T] weights for the current epoch, in task order."""
        T = len(self.tasks)
        if int(self.epochs_seen) < 2:
            return torch.ones(T)
        before, last = self.history[0].double(), self.history[1].double()
        ratio = last / before
        ratio = torch.where(torch.isfinite(ratio) & (before > 0) & (last >= 0), ratio, torch.ones_like(ratio))
        return (T * torch.softmax(ratio / self.temperature, dim=0)).float()

    def _backward(self, names: list[str], losses: list[Tensor], shared: list[nn.Parameter], *, step: int) -> Tensor:
        w = self.current_weights()[self._index(names)]
        backward_weighted(losses, w)
        return w
