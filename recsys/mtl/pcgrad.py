"""PCGrad, projecting conflicting gradients (Yu, Kumar, Gupta, Levine, Hausman & Finn,
"Gradient Surgery for Multi-Task Learning", NeurIPS'20).

For each task i, in a random order over the other tasks j: if g_i . g_j < 0, remove from g_i
its component along g_j,

    g_i <- g_i - (g_i . g_j) / ||g_j||^2 * g_j,

then the shared parameters get sum_i g_i. Task-specific parameters get their own unweighted
gradient (weight 1), as in the paper. The random order comes from a `torch.Generator` seeded
with (seed, step), so a run is reproducible and a resumed run projects exactly as the original
would, with no generator state to checkpoint.

Cost per step: one gradient per task on the shared parameters, plus one backward pruned to the
task-specific parameters.

Example:
    >>> import torch
    >>> g = pcgrad_project(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]), torch.Generator().manual_seed(0))
    >>> g.tolist()
    [[0.5, 0.5], [0.0, 1.0]]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.mtl.base import Weighting, backward_split, backward_weighted, task_gradients


def pcgrad_project(grads: Tensor, generator: torch.Generator, eps: float = 1e-20) -> Tensor:
    """Project each task's gradient off the others it conflicts with.

    Args:
        grads: [T, D] per-task gradients.
        generator: CPU generator for the order in which each task visits the others.
        eps: squared norms at or below this count as a zero gradient (nothing to project on).

    Returns:
        [T, D] projected gradients (sum them for the shared update).
    """
    g = grads.double()
    sq_norms = (g * g).sum(dim=1)
    out = g.clone()
    T = g.shape[0]
    for i in range(T):
        for j in torch.randperm(T, generator=generator).tolist():
            if j == i or sq_norms[j] <= eps:
                continue
            dot = out[i] @ g[j]
            if dot < 0:
                out[i] -= dot / sq_norms[j] * g[j]
    return out.to(grads.dtype)


class PCGradWeighting(Weighting):
    """Gradient surgery on the shared parameters; loss weights stay 1.

    Config:
        seed: seed of the projection order, combined with the step (default 0).
    """

    name = "pcgrad"
    defaults = {"seed": 0}

    def __init__(self, tasks: tuple[str, ...], **config: Any) -> None:
        super().__init__(tasks, **config)
        seed = self.config["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"weighting 'pcgrad': option 'seed' must be an int >= 0, got {seed!r}")

    def _backward(self, names: list[str], losses: list[Tensor], shared: list[nn.Parameter], *, step: int) -> Tensor:
        w = torch.ones(len(names))
        if len(names) == 1 or not shared:
            backward_weighted(losses, w)
            return w
        generator = torch.Generator().manual_seed(int(self.config["seed"]) * 1_000_003 + int(step))
        grads = task_gradients(losses, shared)
        backward_split(losses, w, shared, pcgrad_project(grads, generator).sum(dim=0))
        return w
