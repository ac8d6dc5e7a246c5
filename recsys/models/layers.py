"""Building blocks shared by the rankers: a plain MLP and N independent MLPs run as one.

`ParallelMLP` holds N networks of the same shape (the experts of MMoE / PLE, or one tower per
task) as stacked weights [N, in, out] and runs them with batched matmuls (`torch.baddbmm`), so
N small networks cost a few large kernels instead of N times as many small ones. On one CPU
thread this is as fast as a loop of `nn.Linear` for wide layers and about twice as fast for the
narrow task towers.

Shapes: B batch, N parallel networks, D hidden width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Sequential):
    """Linear → ReLU → Dropout for each hidden width.

    Args:
        in_dim: input width.
        hidden: output width of each layer; the last one is `out_dim`.
        dropout: dropout rate after every layer (0 disables it).

    Shapes:
        [..., in_dim] → [..., hidden[-1]]

    Example:
        >>> MLP(8, (16, 4))(torch.zeros(2, 8)).shape
        torch.Size([2, 4])
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = width
        super().__init__(*layers)
        self.out_dim = in_dim


class ParallelMLP(nn.Module):
    """N independent MLPs of one shape, evaluated together.

    Hidden layers are Linear → ReLU → Dropout; with `out_dim` a last plain Linear follows (a
    task tower ending in one score). Each member is initialised like `nn.Linear`.

    Args:
        n: number of networks N.
        in_dim: input width.
        hidden: widths of the hidden layers (may be empty when `out_dim` is given).
        dropout: dropout rate after every hidden layer.
        out_dim: width of a final linear layer without activation; None ends at `hidden[-1]`.

    Shapes:
        input [B, in_dim] (the same input for every network) or [N, B, in_dim] (one each)
        → [N, B, out_dim or hidden[-1]]

    Example:
        >>> towers = ParallelMLP(3, 8, (16,), out_dim=1)
        >>> towers(torch.zeros(5, 8)).shape, towers(torch.zeros(3, 5, 8)).shape
        (torch.Size([3, 5, 1]), torch.Size([3, 5, 1]))
    """

    def __init__(self, n: int, in_dim: int, hidden: Sequence[int], dropout: float = 0.0, *,
                 out_dim: int | None = None) -> None:
        super().__init__()
        widths = [in_dim, *hidden] + ([out_dim] if out_dim is not None else [])
        if len(widths) < 2:
            raise ValueError("ParallelMLP needs at least one hidden layer or an out_dim")
        self.n, self.in_dim, self.out_dim = n, in_dim, widths[-1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default range
            self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))
        self.activate_last = out_dim is None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() == 2:  # one input shared by all N networks
            h = h.unsqueeze(0).expand(self.n, -1, -1)
        if h.dim() != 3 or h.shape[0] != self.n or h.shape[-1] != self.in_dim:
            raise ValueError(
                f"ParallelMLP of {self.n} networks with input width {self.in_dim} got input of shape "
                f"{tuple(h.shape)}; expected [B, {self.in_dim}] or [{self.n}, B, {self.in_dim}]"
            )
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # [N, B, out]
            if i < last or self.activate_last:
                h = self.dropout(torch.relu(h))
        return h

    def extra_repr(self) -> str:
        widths = [self.in_dim] + [w.shape[-1] for w in self.weights]
        return f"n={self.n}, widths={widths}"
