"""One shared network conditioned on a learned task embedding: f(y | x, z_t).

The seed notes (Stanford CS330, multi-task learning) frame multi-task learning as a single
model f_theta(y | x, z_t) and list ways to feed the task descriptor z_t in; here z_t is a
learned embedding per task and three ways are selectable:

    concat  z_t concatenated to the input: h1 = relu(W [x; z_t] + b) = relu(W_x x + W_z z_t + b)
    add     a task-dependent shift of every hidden layer: h_l = relu(W_l h + b_l + A_l z_t)
    mul     FiLM-like multiplicative gating of every hidden layer:
            h_l = relu((W_l h + b_l) * (1 + M_l z_t))        (Perez et al., AAAI'18)

Concatenation at the input is an additive shift of the first layer (the notes point this out),
so `add` differs from `concat` by conditioning every layer, not only the first. The fourth way,
separate heads, is `multi_head.py`.

The network runs once per task by broadcasting: the first layer's x-part is computed once
[B, D] and broadcast against the T task terms to [T, B, D]; later layers see T*B rows. A small
output layer per task kind (binary → logit, regression → value) is shared by the tasks of that
kind, so two binary tasks differ only through z_t.

Shapes: B batch, F fields, D hidden, T tasks, Z task-embedding size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from recsys.data.fields import TASK_KINDS, Schema
from recsys.errors import ConfigError
from recsys.models.base import Ranker, RankerConfig
from recsys.models.layers import SplitInput

MODES: tuple[str, ...] = ("concat", "add", "mul")


@dataclass(frozen=True)
class TaskConditionedConfig(RankerConfig):
    """Attributes: hidden: widths of the shared network; task_dim: size Z of the task embedding."""

    hidden: tuple[int, ...] = (256, 128, 64)
    task_dim: int = 16


class TaskConditioned(Ranker):
    """A single network shared by all tasks, conditioned on a task embedding.

    Args:
        schema: layout of `x`.
        tasks: tasks to predict (default: the schema's).
        config: `TaskConditionedConfig`.
        mode: ``concat``, ``add`` or ``mul``; defaults to the class's (the registry names
            ``task_concat``, ``task_add``, ``task_mul`` are the three subclasses below).

    Attributes:
        task_embedding: z, [T, Z].

    Shapes:
        x [B, W] → {task: [B]}

    Example:
        >>> from recsys.data.fields import Field, Schema
        >>> schema = Schema(fields=(Field("f_user_id", "user", "user", 10),
        ...                         Field("f_item_id", "item", "item", 20)), tasks=("click", "like", "rating"))
        >>> model = TaskConditioned(schema, mode="mul")
        >>> {t: s.shape for t, s in model(torch.tensor([[2, 5]])).items()}
        {'click': torch.Size([1]), 'like': torch.Size([1]), 'rating': torch.Size([1])}
    """

    name = "task_conditioned"
    mode: ClassVar[str] = "concat"
    config_class = TaskConditionedConfig

    def __init__(self, schema: Schema, tasks: Sequence[str] | None = None,
                 config: TaskConditionedConfig | None = None, *, mode: str | None = None) -> None:
        super().__init__(schema, tasks, config)
        mode = mode or type(self).mode
        if mode not in MODES:
            raise ConfigError(f"unknown conditioning mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        c = self.config
        self.task_embedding = nn.Embedding(len(self.tasks), c.task_dim)
        nn.init.normal_(self.task_embedding.weight, std=0.1)  # tasks start close to one network
        widths = (self.in_dim, *c.hidden)
        self.layers = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(len(c.hidden)))
        conditioned = c.hidden[:1] if mode == "concat" else c.hidden  # z_t enters these layers
        self.conditioning = nn.ModuleList(nn.Linear(c.task_dim, width, bias=False) for width in conditioned)
        self.dropout = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        self.kinds = tuple(TASK_KINDS[t] for t in self.tasks)
        self.outputs = nn.ModuleDict({kind: nn.Linear(c.hidden[-1], 1) for kind in dict.fromkeys(self.kinds)})

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self._from_first(self.layers[0](h))

    def scores_split(self, h: SplitInput) -> torch.Tensor:
        return self._from_first(h.linear(self.layers[0]))

    def _from_first(self, a: torch.Tensor) -> torch.Tensor:
        """The network from the first layer's pre-activation [B, D] (before z_t): [T, B]."""
        z = self.task_embedding.weight  # [T, Z]
        for i, layer in enumerate(self.layers):
            if i:
                a = layer(h)  # [T, B, D] (the first layer's a is [B, D])
            if i < len(self.conditioning):
                c = self.conditioning[i](z).unsqueeze(1)  # [T, 1, D]
                a = a * (1 + c) if self.mode == "mul" else a + c
            h = self.dropout(torch.relu(a))
        weight = torch.cat([self.outputs[k].weight for k in self.kinds])  # [T, D]
        bias = torch.cat([self.outputs[k].bias for k in self.kinds])  # [T]
        return torch.einsum("tbd,td->tb", h, weight) + bias.unsqueeze(1)  # [T, B]

    def spec(self) -> dict:
        return {**super().spec(), "name": f"task_{self.mode}"}

    def shared_modules(self) -> Iterable[nn.Module]:
        # Everything but z_t is shared, except an output layer that only one task uses.
        used = {k: self.kinds.count(k) for k in self.outputs}
        return (*self.layers, *self.conditioning, *(self.outputs[k] for k, n in used.items() if n > 1))


class TaskConcat(TaskConditioned):
    """`TaskConditioned` with the task embedding concatenated to the input."""

    name, mode = "task_concat", "concat"


class TaskAdd(TaskConditioned):
    """`TaskConditioned` with an additive task shift of every hidden layer."""

    name, mode = "task_add", "add"


class TaskMul(TaskConditioned):
    """`TaskConditioned` with FiLM-like multiplicative task gating of every hidden layer."""

    name, mode = "task_mul", "mul"
