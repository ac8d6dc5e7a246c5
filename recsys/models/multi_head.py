"""Multi-head network: a shared trunk with one linear head per task.

The fourth way of conditioning on the task in the seed notes (Stanford CS330, lecture on
multi-task learning): split the last layer into one head per task and share everything below
it. It is the shared bottom with towers reduced to a single linear layer, the most sharing an
architecture with task-specific parameters can have.

    x → embeddings [B, F*D] → trunk MLP [B, D] → Linear(D, T) → {task: [B]}

Shapes: B batch, F fields, D hidden, T tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from recsys.data.fields import Schema
from recsys.models.base import Ranker, RankerConfig
from recsys.models.layers import MLP, SplitInput


@dataclass(frozen=True)
class MultiHeadConfig(RankerConfig):
    """Attributes: hidden: widths of the shared trunk."""

    hidden: tuple[int, ...] = (256, 128, 64)


class MultiHead(Ranker):
    """Shared trunk, one linear output head per task.

    Args:
        schema: layout of `x`.
        tasks: tasks to predict (default: the schema's).
        config: `MultiHeadConfig`.

    Shapes:
        x [B, W] → {task: [B]}

    Example:
        >>> from recsys.data.fields import Field, Schema
        >>> schema = Schema(fields=(Field("f_user_id", "user", "user", 10),
        ...                         Field("f_item_id", "item", "item", 20)), tasks=("click", "like"))
        >>> MultiHead(schema)(torch.tensor([[2, 5], [3, 3]]))["like"].shape
        torch.Size([2])
    """

    name = "multi_head"
    config_class = MultiHeadConfig

    def __init__(self, schema: Schema, tasks: Sequence[str] | None = None,
                 config: MultiHeadConfig | None = None) -> None:
        super().__init__(schema, tasks, config)
        self.trunk = MLP(self.in_dim, self.config.hidden, self.config.dropout)
        self.heads = nn.Linear(self.trunk.out_dim, len(self.tasks))  # row t is task t's head

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self.heads(self.trunk(h)).t()  # [T, B]

    def scores_split(self, h: SplitInput) -> torch.Tensor:
        return self.heads(self.trunk.forward_split(h)).t()  # [T, B]

    def shared_modules(self) -> Iterable[nn.Module]:
        return (self.trunk,)
