"""Shared-bottom network: hard parameter sharing.

One MLP (the bottom) is shared by every task; each task has a small tower on top of it
(Caruana, "Multitask Learning", Machine Learning 1997; the shared-bottom baseline of Ma et al.,
KDD'18). All tasks must agree on one representation, which helps related tasks and hurts
conflicting ones (negative transfer).

    x → embeddings [B, F*D] → bottom MLP [B, D] → tower_t [B] for each task t

Shapes: B batch, F fields, D hidden, T tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from recsys.data.fields import Schema
from recsys.models.base import Ranker, RankerConfig
from recsys.models.layers import MLP, ParallelMLP, SplitInput


@dataclass(frozen=True)
class SharedBottomConfig(RankerConfig):
    """Attributes: bottom_hidden: widths of the shared MLP; tower_hidden: hidden widths of each tower."""

    bottom_hidden: tuple[int, ...] = (256, 128)
    tower_hidden: tuple[int, ...] = (64,)


class SharedBottom(Ranker):
    """Hard sharing: one shared MLP, then one MLP tower per task.

    Args:
        schema: layout of `x`.
        tasks: tasks to predict (default: the schema's).
        config: `SharedBottomConfig`.

    Shapes:
        x [B, W] → {task: [B]}

    Example:
        >>> from recsys.data.fields import Field, Schema
        >>> schema = Schema(fields=(Field("f_user_id", "user", "user", 10),
        ...                         Field("f_item_id", "item", "item", 20)), tasks=("click", "rating"))
        >>> model = SharedBottom(schema)
        >>> {t: s.shape for t, s in model(torch.tensor([[2, 5], [3, 7]])).items()}
        {'click': torch.Size([2]), 'rating': torch.Size([2])}
    """

    name = "shared_bottom"
    config_class = SharedBottomConfig

    def __init__(self, schema: Schema, tasks: Sequence[str] | None = None,
                 config: SharedBottomConfig | None = None) -> None:
        super().__init__(schema, tasks, config)
        c = self.config
        self.bottom = MLP(self.in_dim, c.bottom_hidden, c.dropout)
        self.towers = ParallelMLP(len(self.tasks), self.bottom.out_dim, c.tower_hidden, c.dropout, out_dim=1)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self.towers(self.bottom(h)).squeeze(-1)  # [T, B]

    def scores_split(self, h: SplitInput) -> torch.Tensor:
        return self.towers(self.bottom.forward_split(h)).squeeze(-1)  # [T, B]

    def shared_modules(self) -> Iterable[nn.Module]:
        return (self.bottom,)
