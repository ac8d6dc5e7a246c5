"""Independent networks: no sharing beyond the input embeddings.

The other extreme from the shared bottom: each task has its own full MLP, so no task's
gradient can disturb another's hidden layers (no negative transfer) but neither can a
data-rich task help a data-poor one (the seed notes' "two extreme cases"; Ruder, "An Overview
of Multi-Task Learning in Deep Neural Networks", 2017). The T networks run together as one
batched `ParallelMLP`.

Only the embedding tables are shared. For fully separate models, embeddings included, build
one single-task model per task (``tasks=("click",)`` and so on).

    x → embeddings [B, F*D] → MLP_t [B] for each task t

Shapes: B batch, F fields, D hidden, T tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from recsys.data.fields import Schema
from recsys.models.base import Ranker, RankerConfig
from recsys.models.layers import ParallelMLP, SplitInput


@dataclass(frozen=True)
class IndependentConfig(RankerConfig):
    """Attributes: hidden: hidden widths of each task's network (a final linear layer follows)."""

    hidden: tuple[int, ...] = (256, 128, 64)


class Independent(Ranker):
    """A separate MLP per task over shared embeddings.

    Args:
        schema: layout of `x`.
        tasks: tasks to predict (default: the schema's).
        config: `IndependentConfig`.

    Shapes:
        x [B, W] → {task: [B]}

    Example:
        >>> from recsys.data.fields import Field, Schema
        >>> schema = Schema(fields=(Field("f_user_id", "user", "user", 10),
        ...                         Field("f_item_id", "item", "item", 20)), tasks=("click", "like"))
        >>> model = Independent(schema)
        >>> sorted(model(torch.tensor([[2, 5]])))
        ['click', 'like']
    """

    name = "independent"
    config_class = IndependentConfig

    def __init__(self, schema: Schema, tasks: Sequence[str] | None = None,
                 config: IndependentConfig | None = None) -> None:
        super().__init__(schema, tasks, config)
        self.networks = ParallelMLP(len(self.tasks), self.in_dim, self.config.hidden, self.config.dropout, out_dim=1)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self.networks(h).squeeze(-1)  # [T, B]

    def scores_split(self, h: SplitInput) -> torch.Tensor:
        return self.networks.forward_split(h).squeeze(-1)  # [T, B]

    def shared_modules(self) -> Iterable[nn.Module]:
        return ()  # only the embeddings
