"""Shallow tower for position (selection) bias, after Zhao et al., "Recommending What Video to
Watch Next: A Multitask Ranking System", RecSys'19 (the "shallow tower").

Users click items near the top of a slate more often whatever the item. The shallow tower sees
only what causes that bias (the slate position, optionally device-like context) and outputs a
logit that is added to the engagement (click) logit during training, so the main network is
not asked to explain the position effect. At serving no position exists yet and the term is
left out, which ranks candidates as if all were shown at the same position.

As in the paper, the position is dropped (set to 0, "unknown") for a fraction of training rows
so that the model does not lean on it too much.

Shapes: B batch, C context width.
"""

from __future__ import annotations

import torch
from torch import nn


class BiasTower(nn.Module):
    """Position (+ context) → additive bias logit for the click task.

    Args:
        num_positions: slate positions; ids 1..num_positions, 0 = unknown.
        context_dim: width C of the optional context input (0 for none).
        dim: position embedding size.
        hidden: width of the single hidden layer.
        position_dropout: rate at which a training row's position is replaced by 0 (unknown).

    Shapes:
        position [B] int, context [B, C] → bias logit [B]

    Example:
        >>> tower = BiasTower(10).eval()
        >>> tower(torch.tensor([1, 2, 10])).shape
        torch.Size([3])
    """

    def __init__(self, num_positions: int, *, context_dim: int = 0, dim: int = 8, hidden: int = 16,
                 position_dropout: float = 0.1) -> None:
        super().__init__()
        self.num_positions, self.context_dim = num_positions, context_dim
        self.position_dropout = position_dropout
        self.position = nn.Embedding(num_positions + 1, dim)
        self.mlp = nn.Sequential(nn.Linear(dim + context_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, position: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        self._check(position, context)
        if self.training and self.position_dropout > 0:
            drop = torch.rand(position.shape, device=position.device) < self.position_dropout
            position = position.masked_fill(drop, 0)
        h = self.position(position)
        if self.context_dim:
            h = torch.cat([h, context], 1)
        return self.mlp(h).squeeze(-1)

    def _check(self, position: torch.Tensor, context: torch.Tensor | None) -> None:
        if position.dim() != 1 or position.dtype.is_floating_point:
            raise ValueError(f"position must be an integer tensor [B], got {position.dtype} of shape "
                             f"{tuple(position.shape)}")
        if position.numel():
            low, high = int(position.min()), int(position.max())
            if low < 0 or high > self.num_positions:
                raise ValueError(f"position {high if high > self.num_positions else low} outside "
                                 f"0..{self.num_positions} (0 = unknown, 1..{self.num_positions} slots)")
        if self.context_dim and (context is None or context.shape != (position.shape[0], self.context_dim)):
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"bias tower needs context of shape [{position.shape[0]}, {self.context_dim}], "
                             f"got {got}")
