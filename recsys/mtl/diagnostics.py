"""Multi-task diagnostics: measured negative transfer and expert-gate usage.

`grad_cosine` is the cosine between tasks' gradients on the shared parameters: negative values
mean the tasks pull the shared network in conflicting directions, the symptom PCGrad (Yu et al.,
NeurIPS'20) and MGDA (Sener & Koltun, NeurIPS'18) act on. `gate_utilisation` and
`gate_entropy` show how an MMoE / PLE task gate (Ma et al. KDD'18; Tang et al. RecSys'20)
spreads its weight over experts: a gate stuck on one expert, or experts no task uses.

Cost: `grad_cosine` takes one gradient per task on the given parameters (keeping the graph, so
training can still call backward); pass the last shared layer for a cheaper view, and call it
every N steps. The gate functions are a mean over the batch.

Shape letters: B batch, E experts.

Example:
    >>> import torch
    >>> gate_utilisation({"click": torch.tensor([[1.0, 0.0], [0.5, 0.5]])})
    {'click': [0.75, 0.25]}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from recsys.mtl.base import task_gradients


def grad_cosine(losses: dict[str, Tensor], shared_params: Sequence[Tensor]) -> dict[str, float]:
    """Cosine similarity of every pair of per-task gradients on the shared parameters.

    Args:
        losses: task -> scalar loss with a graph (the graph is retained).
        shared_params: parameters to measure on (D elements in all).

    Returns:
        ``"task_a|task_b"`` -> cosine in [-1, 1] for each pair, in the order of `losses`;
        0.0 where either gradient is zero.
    """
    names = list(losses)
    params = [p for p in shared_params if p.requires_grad]
    if len(names) < 2 or not params:
        return {}
    grads = task_gradients([losses[n] for n in names], params).double()
    norms = grads.norm(dim=1)
    unit = grads / torch.where(norms > 0, norms, torch.ones_like(norms))[:, None]
    cos = (unit @ unit.T).clamp(-1.0, 1.0)
    return {f"{a}|{b}": float(cos[i, j]) for i, a in enumerate(names) for j, b in enumerate(names) if i < j}


def gate_utilisation(gates: dict[str, Tensor]) -> dict[str, list[float]]:
    """Mean gate weight of each expert, per task.

    Args:
        gates: task -> [B, E] gate weights (rows sum to 1).

    Returns:
        task -> E mean weights (they sum to 1 for softmax gates).
    """
    return {task: _check_gate(task, g).mean(dim=0).tolist() for task, g in gates.items()}


def gate_entropy(gates: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """Entropy of each task's gates, normalised by log E (0 = one expert, 1 = uniform).

    Args:
        gates: task -> [B, E] gate weights (rows sum to 1).

    Returns:
        task -> ``{"row": mean entropy of a row's gate (how peaked one decision is),
        "usage": entropy of the mean gate (how evenly the task uses its experts over the batch)}``.
    """
    out: dict[str, dict[str, float]] = {}
    for task, g in gates.items():
        g = _check_gate(task, g).double()
        scale = math.log(g.shape[1]) if g.shape[1] > 1 else 1.0
        mean = g.mean(dim=0)
        out[task] = {
            "row": float(_entropy(g).mean() / scale),
            "usage": float(_entropy(mean) / scale),
        }
    return out


def _entropy(p: Tensor) -> Tensor:
    p = p.clamp_min(0.0)
    return -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(dim=-1)


def _check_gate(task: str, g: Tensor) -> Tensor:
    if g.ndim != 2 or g.shape[0] == 0 or g.shape[1] == 0:
        raise ValueError(f"gate of task {task!r} must be [B, E] with B, E >= 1, got shape {tuple(g.shape)}")
    return g.detach().float()
