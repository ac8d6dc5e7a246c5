"""Static loss weights: the objective sum_t w_t L_t with user-given, fixed w_t.

The baseline every adaptive strategy is compared against (the "fixed weights" objective of the
multi-task notes; e.g. Zhao et al., "Recommending What Video to Watch Next", RecSys'19 combine
their engagement and satisfaction objectives with hand-tuned weights).

Example:
    >>> w = StaticWeighting(("click", "rating"), weights={"rating": 0.5})
    >>> w.weights.tolist()
    [1.0, 0.5]
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.mtl.base import Weighting, backward_weighted


class StaticWeighting(Weighting):
    """Fixed weights; a task not named in ``weights`` gets 1.0.

    Config:
        weights: task -> non-negative finite weight (default: all 1.0).
    """

    name = "static"
    defaults = {"weights": None}

    def __init__(self, tasks: tuple[str, ...], **config: Any) -> None:
        super().__init__(tasks, **config)
        given = self.config["weights"] or {}
        if not isinstance(given, dict):
            raise ConfigError(f"weighting 'static': option 'weights' must map task -> weight, got {given!r}")
        for task, value in given.items():
            if task not in self.tasks:
                raise ConfigError(
                    f"weighting 'static': weight for unknown task {task!r} (tasks: {', '.join(self.tasks)})"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(
                    f"weighting 'static': weight of {task!r} must be a finite number >= 0, got {value!r}"
                )
        values = [float(given.get(t, 1.0)) for t in self.tasks]
        #: [T] the fixed weights, in task order (a buffer, so checkpoints carry them).
        self.weights: Tensor
        self.register_buffer("weights", torch.tensor(values))

    def _backward(self, names: list[str], losses: list[Tensor], shared: list[nn.Parameter], *, step: int) -> Tensor:
        w = self.weights[self._index(names)]
        backward_weighted(losses, w)
        return w
