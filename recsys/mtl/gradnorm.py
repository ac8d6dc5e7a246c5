"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for
Adaptive Loss Balancing in Deep Multitask Networks", ICML'18).

Learned weights w_t make each task's gradient norm on the last shared layer W track how far
that task lags in training:

    G_t   = || grad_W (w_t L_t) ||          G_bar = mean_t G_t
    r_t   = (L_t / L_t(0)) / mean_k (L_k / L_k(0))
    L_grad = sum_t | G_t - G_bar * r_t^alpha |      (the target is a constant)

The model trains on sum_t w_t L_t with the current weights; the weights get grad L_grad as
their gradient and move with the trainer's optimizer. As in LibMTL (Lin & Zhang, JMLR'23) the
weights are parameterised as w = T * softmax(logits), which renormalises them to sum to T and
keeps each one finite and > 0 however large a step the optimizer takes. L_t(0) is the task's
first observed loss. Both the logits and L(0) live in the state dict.

Cost per step: one gradient per task on W only, plus one ordinary backward.

Example:
    >>> w = GradNormWeighting(("click", "like", "rating"), alpha=1.5)
    >>> w.current_weights().sum().item()
    3.0
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from recsys.mtl.base import Weighting, backward_weighted, check_param_spec, select_params, task_gradients


class GradNormWeighting(Weighting):
    """GradNorm weights (add `extra_parameters()` to the optimizer).

    Config:
        alpha: strength of the pull towards equal training rates (default 1.5).
        grad_params: shared parameters whose gradient norm is balanced: ``"last"`` (the last
            shared weight matrix, as in the paper; default), ``"all"``, or an int k (last k).
    """

    name = "gradnorm"
    defaults = {"alpha": 1.5, "grad_params": "last"}

    def __init__(self, tasks: tuple[str, ...], **config: Any) -> None:
        super().__init__(tasks, **config)
        self.alpha = self._check_number("alpha", low=0.0, high=100.0)
        check_param_spec(self.name, self.config["grad_params"])
        #: [T] weight logits; weights = T * softmax(logits).
        self.logits = nn.Parameter(torch.zeros(len(self.tasks)))
        #: [T] first observed loss of each task (NaN until seen).
        self.initial_losses: Tensor
        self.register_buffer("initial_losses", torch.full((len(self.tasks),), math.nan))

    def current_weights(self) -> Tensor:
        """[T] weights of all tasks (they sum to T)."""
        return len(self.tasks) * torch.softmax(self.logits.detach(), dim=0)

    def _backward(self, names: list[str], losses: list[Tensor], shared: list[nn.Parameter], *, step: int) -> Tensor:
        idx = self._index(names).to(self.logits.device)
        loss_now = torch.stack([l.detach() for l in losses]).to(self.initial_losses)
        with torch.no_grad():
            first = self.initial_losses[idx]
            self.initial_losses[idx] = torch.where(torch.isnan(first), loss_now, first)
        w = len(names) * torch.softmax(self.logits[idx], dim=0)  # sums to T over present tasks

        params = select_params(shared, self.config["grad_params"])
        if params:
            norms = task_gradients(losses, params).double().norm(dim=1).to(w)  # ||grad_W L_t||
            G = w * norms
            ratio = loss_now / self.initial_losses[idx].clamp_min(1e-12)
            ratio = torch.nan_to_num(ratio, nan=1.0, posinf=1.0)
            r = ratio / ratio.mean().clamp_min(1e-12)
            target = (G.mean() * r.pow(self.alpha)).detach()
            (grad,) = torch.autograd.grad((G - target).abs().sum(), self.logits)
            grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
            self.logits.grad = grad if self.logits.grad is None else self.logits.grad + grad
        backward_weighted(losses, w.detach())
        return w.detach()
