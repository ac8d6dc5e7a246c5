"""Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, "Multi-Task Learning Using
Uncertainty to Weigh Losses for Scene Geometry and Semantics", CVPR'18).

Each task t has a learned log-variance s_t = log sigma_t^2. The objective is the negative
log-likelihood of the tasks' Gaussian (regression) or tempered-logistic (classification)
models:

    L = sum_t  c_t * exp(-s_t) * L_t  +  s_t / 2,     c_t = 1/2 (regression), 1 (binary)

so the weight of task t is c_t * exp(-s_t): a noisy or badly scaled task learns a large s_t
and is down-weighted, and the + s_t / 2 term stops every s_t from growing without bound.
s_t is projected into [min_log_var, max_log_var] before each use, so weights stay within
[c_t * exp(-max_log_var), c_t * exp(-min_log_var)] whatever the losses do.

Example:
    >>> w = UncertaintyWeighting(("click", "rating"))
    >>> [round(v, 3) for v in w.current_weights().tolist()]
    [1.0, 0.5]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from recsys.data.fields import TASK_KINDS
from recsys.errors import ConfigError
from recsys.mtl.base import Weighting


class UncertaintyWeighting(Weighting):
    """Learned log-variances s_t (add `extra_parameters()` to the optimizer).

    Config:
        init: initial s_t (default 0.0).
        min_log_var, max_log_var: the range s_t is projected into (default -5.0, 5.0).
    """

    name = "uncertainty"
    defaults = {"init": 0.0, "min_log_var": -5.0, "max_log_var": 5.0}

    def __init__(self, tasks: tuple[str, ...], **config: Any) -> None:
        super().__init__(tasks, **config)
        self.lo = self._check_number("min_log_var", low=-30.0, high=30.0)
        self.hi = self._check_number("max_log_var", low=-30.0, high=30.0)
        if self.lo > self.hi:
            raise ConfigError(f"weighting 'uncertainty': min_log_var {self.lo} > max_log_var {self.hi}")
        init = self._check_number("init", low=self.lo, high=self.hi)
        #: [T] learned log-variances s_t, in task order.
        self.log_vars = nn.Parameter(torch.full((len(self.tasks),), init))
        factors = [1.0 if TASK_KINDS[t] == "binary" else 0.5 for t in self.tasks]
        self.factors: Tensor
        self.register_buffer("factors", torch.tensor(factors))

    def current_weights(self) -> Tensor:
        """[T] weights c_t * exp(-s_t) with s_t clamped to the configured range."""
        return (self.factors * torch.exp(-self.log_vars.detach().clamp(self.lo, self.hi)))

    def _backward(self, names: list[str], losses: list[Tensor], shared: list[nn.Parameter], *, step: int) -> Tensor:
        with torch.no_grad():  # projection: an optimizer step may have left the range
            self.log_vars.clamp_(self.lo, self.hi)
        idx = self._index(names).to(self.log_vars.device)
        s = self.log_vars[idx]
        w = self.factors[idx] * torch.exp(-s)
        loss = torch.stack(losses)
        (w.to(loss.dtype) * loss + 0.5 * s.to(loss.dtype)).sum().backward()
        return w.detach()
