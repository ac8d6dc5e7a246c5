"""A tiny multi-task model and seeded batches for the mtl tests (a plain module: importable by name)."""

from __future__ import annotations

import torch
from torch import nn

TASKS = ("click", "like", "rating")


class TinyMTL(nn.Module):
    """Shared two-layer trunk, one linear head per task; forward -> task -> [B]."""

    def __init__(self, tasks=TASKS, d_in: int = 4, d: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.tasks = tuple(tasks)
        self.trunk = nn.Sequential(nn.Linear(d_in, d), nn.Tanh(), nn.Linear(d, d), nn.Tanh())
        self.heads = nn.ModuleDict({t: nn.Linear(d, 1) for t in self.tasks})

    def forward(self, x):
        h = self.trunk(x)
        return {t: head(h).squeeze(-1) for t, head in self.heads.items()}

    def shared_parameters(self):
        return list(self.trunk.parameters())


def make_batch(step: int, tasks=TASKS, n: int = 16, d_in: int = 4):
    """Seeded batch: binary labels for click/like, regression for rating (NaN where no click)."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(n, d_in, generator=g)
    cols = []
    click = (torch.rand(n, generator=g) < 0.5).float()
    for t in tasks:
        if t == "click":
            cols.append(click)
        elif t == "like":
            cols.append((torch.rand(n, generator=g) < 0.3).float())
        else:
            r = 1 + 4 * torch.rand(n, generator=g)
            cols.append(torch.where(click == 1, r, torch.full_like(r, float("nan"))))
    return x, torch.stack(cols, dim=1)
