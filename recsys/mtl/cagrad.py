"""CAGrad, conflict-averse gradient descent (Liu, Liu, Jin, Stone & Liu, "Conflict-Averse
Gradient Descent for Multi-task Learning", NeurIPS'21).

The shared update d maximises the worst task's improvement within a ball around the average
gradient g0 = mean_t g_t:  max_d min_t g_t . d  s.t. ||d - g0|| <= c ||g0||.  Its dual is

    w* = argmin_{w in simplex}  g_w . g0 + c ||g0|| ||g_w||,     g_w = sum_t w_t g_t,
    d  = g0 + (c ||g0|| / ||g_w||) g_w,

rescaled by 1 / (1 + c^2) (``rescale=1``, the paper's default). d is a non-negative combination
of the task gradients, d = sum_t v_t g_t with v_t = (1/T + lambda w_t) / rescale; the returned
loss weights are v_t, and the task-specific parameters get them too. The dual is solved on the
T x T Gram matrix by projected gradient descent with backtracking (no SciPy needed); LibMTL
(Lin & Zhang, JMLR'23) uses SLSQP for the same problem. c = 0 gives equal weights / T.

Cost per step: one gradient per task on the shared parameters, plus one backward pruned to the
task-specific parameters.

Example:
    >>> import torch
    >>> [round(v, 3) for v in cagrad_dual(torch.eye(2), 0.5).tolist()]
    [0.5, 0.5]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.mtl.base import Weighting, backward_split, backward_weighted, task_gradients

RESCALES = (0, 1, 2)


def _project_simplex(v: np.ndarray) -> np.ndarray:
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.nonzero(u - css / np.arange(1, len(v) + 1) > 0)[0][-1]
    return np.maximum(v - css[k] / (k + 1.0), 0.0)


def cagrad_dual(gram: Tensor, c: float, *, max_iter: int = 500, tol: float = 1e-10) -> Tensor:
    """Solve min_{w in simplex} w^T M b + c sqrt(b^T M b) sqrt(w^T M w), b = 1/T.

    Args:
        gram: [T, T] Gram matrix M of the task gradients.
        c: the ball radius relative to ||g0||.
        max_iter: projected-gradient iterations at most.
        tol: stop when no weight moves more than this.

    Returns:
        [T] float64 weights w >= 0 summing to 1.
    """
    A = gram.detach().double().cpu().numpy()
    T = A.shape[0]
    A = A / max(float(np.max(np.diag(A))), 1e-300)  # scale-free: the argmin is unchanged
    b = np.full(T, 1.0 / T)
    Ab = A @ b
    radius = c * math.sqrt(max(float(b @ Ab), 0.0) + 1e-12)

    def f(w: np.ndarray) -> float:
        return float(w @ Ab + radius * math.sqrt(max(float(w @ A @ w), 0.0) + 1e-12))

    w, step = b.copy(), 1.0
    for _ in range(max_iter):
        Aw = A @ w
        grad = Ab + radius * Aw / math.sqrt(max(float(w @ Aw), 0.0) + 1e-12)
        fw = f(w)
        while True:  # backtracking on the projected-gradient sufficient decrease condition
            nxt = _project_simplex(w - step * grad)
            diff = nxt - w
            if f(nxt) <= fw + grad @ diff + diff @ diff / (2 * step) + 1e-15 or step < 1e-12:
                break
            step *= 0.5
        w, step = nxt, step * 2.0
        if np.max(np.abs(diff)) < tol:
            break
    return torch.from_numpy(w)


class CAGradWeighting(Weighting):
    """Conflict-averse combination of the shared gradients.

    Config:
        c: radius of the ball around the average gradient, in [0, 1) (default 0.5).
        rescale: 0 (none), 1 (divide by 1 + c^2, default) or 2 (divide by 1 + c).
    """

    name = "cagrad"
    defaults = {"c": 0.5, "rescale": 1}

    def __init__(self, tasks: tuple[str, ...], **config: Any) -> None:
        super().__init__(tasks, **config)
        self.c = self._check_number("c", low=0.0, high=0.999)
        if self.config["rescale"] not in RESCALES or isinstance(self.config["rescale"], bool):
            raise ConfigError(f"weighting 'cagrad': option 'rescale' must be 0, 1 or 2, got {self.config['rescale']!r}")

    def _backward(self, names: list[str], losses: list[Tensor], shared: list[nn.Parameter], *, step: int) -> Tensor:
        T = len(names)
        if T == 1 or not shared:
            w = torch.ones(T)
            backward_weighted(losses, w)
            return w
        grads = task_gradients(losses, shared)
        gram = grads.double() @ grads.double().T
        w = cagrad_dual(gram, self.c).to(gram)
        g0_norm = gram.mean().clamp_min(0.0).sqrt()  # ||mean_t g_t||
        gw_norm = (w @ gram @ w).clamp_min(0.0).sqrt()
        # lambda = c ||g0|| / ||g_w||; when g_w vanishes (or all gradients do) use the mean alone
        lam = self.c * g0_norm / gw_norm if gw_norm > 1e-6 * g0_norm and gw_norm > 0 else gram.new_zeros(())
        denom = {0: 1.0, 1: 1.0 + self.c**2, 2: 1.0 + self.c}[self.config["rescale"]]
        v = ((1.0 / T + lam * w) / denom).float()
        backward_split(losses, v, shared, v.to(grads) @ grads)
        return v
