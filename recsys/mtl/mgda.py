"""MGDA, multiple-gradient descent (Sener & Koltun, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS'18).

The shared parameters step along the min-norm point of the convex hull of the task gradients,

    alpha* = argmin_{alpha in simplex} || sum_t alpha_t g_t ||^2,

a direction that does not increase any task's loss (zero at a Pareto-stationary point). The
quadratic is solved on the Gram matrix by the paper's Frank-Wolfe algorithm, which is exact for
two tasks: alpha_1 = clip((g_2 - g_1) . g_2 / ||g_1 - g_2||^2, 0, 1).

The paper's MGDA-UB solves on the gradient of the shared *representation* as a cheap upper
bound; with only parameters at hand, ``grad_params="last"`` takes the same shortcut on the last
shared layer, while the default ``"all"`` solves exactly on every shared parameter. Optional
gradient normalisation (``l2``, ``loss``, ``loss+``, from the paper's code) rescales g_t by n_t
before solving; the loss weights are then w_t = alpha_t / n_t, so the shared gradient
sum_t w_t g_t is the min-norm point of the normalised gradients. As in the official code, the
task-specific parameters get the same weights.

Example:
    >>> import torch
    >>> [round(v, 4) for v in min_norm_weights(torch.tensor([[4.0, 0.0], [0.0, 1.0]])).tolist()]
    [0.2, 0.8]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.mtl.base import (
    Weighting,
    backward_split,
    backward_weighted,
    check_param_spec,
    select_params,
    task_gradients,
)

NORMALISATIONS = ("none", "l2", "loss", "loss+")


def min_norm_weights(gram: Tensor, *, max_iter: int = 250, tol: float = 1e-7) -> Tensor:
    """Frank-Wolfe solver of min_{alpha in simplex} alpha^T M alpha.

    Args:
        gram: [T, T] Gram matrix M_ij = g_i . g_j of the task gradients.
        max_iter: Frank-Wolfe iterations at most.
        tol: stop when the step size falls below this.

    Returns:
        [T] float64 alpha >= 0 summing to 1.
    """
    M = gram.detach().double().cpu()  # T x T: cheaper on the CPU
    T = M.shape[0]
    alpha = torch.full((T,), 1.0 / T, dtype=torch.float64)
    for _ in range(max_iter if T > 1 else 0):
        Ma = M @ alpha
        t = int(torch.argmin(Ma))  # vertex e_t minimising the linearised objective
        vv, vu, uu = alpha @ Ma, Ma[t], M[t, t]  # |v|^2, v.u, |u|^2 for v = G alpha, u = g_t
        denom = vv - 2 * vu + uu
        if denom <= 0:
            break
        gamma = float(((vv - vu) / denom).clamp(0.0, 1.0))
        alpha = (1 - gamma) * alpha
        alpha[t] += gamma
        if gamma < tol:
            break
    alpha = alpha.clamp_min(0.0)
    return alpha / alpha.sum()


class MGDAWeighting(Weighting):
    """Min-norm (MGDA / MGDA-UB) weights, recomputed every step.

    Config:
        normalize: ``"none"`` (default), ``"l2"``, ``"loss"`` or ``"loss+"``.
        grad_params: ``"all"`` (default, exact), ``"last"`` (last shared weight matrix, the
            MGDA-UB shortcut) or an int k (the last k shared tensors).
        max_iter: Frank-Wolfe iterations at most (default 250).
    """

    name = "mgda"
    defaults = {"normalize": "none", "grad_params": "all", "max_iter": 250}

    def __init__(self, tasks: tuple[str, ...], **config: Any) -> None:
        super().__init__(tasks, **config)
        if self.config["normalize"] not in NORMALISATIONS:
            raise ConfigError(f"weighting 'mgda': option 'normalize' must be one of {NORMALISATIONS}, "
                              f"got {self.config['normalize']!r}")
        check_param_spec(self.name, self.config["grad_params"])
        self._check_number("max_iter", low=1, high=100_000)

    def _backward(self, names: list[str], losses: list[Tensor], shared: list[nn.Parameter], *, step: int) -> Tensor:
        if len(names) == 1 or not shared:
            w = torch.ones(len(names))
            backward_weighted(losses, w)
            return w
        params = select_params(shared, self.config["grad_params"])
        grads = task_gradients(losses, params)
        g = grads.double()
        norms = g.norm(dim=1)
        loss_values = torch.stack([l.detach() for l in losses]).to(norms)
        n = {"none": torch.ones_like(norms), "l2": norms, "loss": loss_values,
             "loss+": loss_values * norms}[self.config["normalize"]]
        n = torch.where(torch.isfinite(n) & (n > 1e-12), n, torch.ones_like(n))
        gn = g / n[:, None]
        alpha = min_norm_weights(gn @ gn.T, max_iter=int(self.config["max_iter"])).to(n)
        w = (alpha / n).float()
        if len(params) == len(shared):  # solved on every shared tensor: reuse the gradients
            backward_split(losses, w, shared, (w.to(grads) @ grads))
        else:
            backward_weighted(losses, w)
        return w
