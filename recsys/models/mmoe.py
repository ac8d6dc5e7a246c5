"""Multi-gate Mixture-of-Experts (MMoE), Ma et al., "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD'18; the ranker of Zhao et al., RecSys'19.

E expert MLPs are shared by all tasks; each task t has its own softmax gate g_t(x) over the
experts and mixes their outputs with it before its tower:

    f_t(x) = tower_t( sum_e g_t(x)_e * expert_e(x) ),   g_t(x) = softmax(W_t x)

Tasks that conflict can learn to use different experts, related tasks the same ones. The gate
weights of the last forward pass are kept in `last_gates` for gate-utilisation diagnostics.

Shapes: B batch, F fields, D embedding dim / hidden, E experts, T tasks.
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
class MMoEConfig(RankerConfig):
    """Attributes: num_experts: E; expert_hidden: widths of each expert MLP; tower_hidden: of each tower."""

    num_experts: int = 4
    expert_hidden: tuple[int, ...] = (256, 128)
    tower_hidden: tuple[int, ...] = (64,)


class MMoE(Ranker):
    """Shared experts, one softmax gate and one tower per task.

    Args:
        schema: layout of `x`.
        tasks: tasks to predict (default: the schema's).
        config: `MMoEConfig`.

    Attributes:
        last_gates: ``{task: [B, E]}`` gate weights of the last forward pass (detached; each row
            sums to 1).
        gate_labels: ``{task: (expert name, ...)}``, the E columns of `last_gates`.

    Shapes:
        x [B, W] → {task: [B]}

    Example:
        >>> from recsys.data.fields import Field, Schema
        >>> schema = Schema(fields=(Field("f_user_id", "user", "user", 10),
        ...                         Field("f_item_id", "item", "item", 20)), tasks=("click", "like"))
        >>> model = MMoE(schema, config=MMoEConfig(num_experts=3))
        >>> out = model(torch.tensor([[2, 5], [3, 7]]))
        >>> model.last_gates["like"].shape, model.gate_labels["like"]
        (torch.Size([2, 3]), ('expert0', 'expert1', 'expert2'))
    """

    name = "mmoe"
    config_class = MMoEConfig

    def __init__(self, schema: Schema, tasks: Sequence[str] | None = None, config: MMoEConfig | None = None) -> None:
        super().__init__(schema, tasks, config)
        c, num_tasks = self.config, len(self.tasks)
        self.experts = ParallelMLP(c.num_experts, self.in_dim, c.expert_hidden, c.dropout)
        self.gates = nn.Linear(self.in_dim, num_tasks * c.num_experts)  # rows [t*E, (t+1)*E) gate task t
        self.towers = ParallelMLP(num_tasks, self.experts.out_dim, c.tower_hidden, c.dropout, out_dim=1)
        self.gate_labels = {t: tuple(f"expert{e}" for e in range(c.num_experts)) for t in self.tasks}
        self.last_gates: dict[str, torch.Tensor] = {}

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self._mix(self.experts(h), self.gates(h))

    def scores_split(self, h: SplitInput) -> torch.Tensor:
        # every expert's first layer and every gate read h: the request part once; serving keeps
        # no gates for diagnostics
        return self._mix(self.experts.forward_split(h), h.linear(self.gates), keep_gates=False)

    def _mix(self, experts: torch.Tensor, gate_logits: torch.Tensor, *, keep_gates: bool = True) -> torch.Tensor:
        """Experts [E, B, D] and gate logits [B, T*E] → [T, B]; with `keep_gates`, the gates go to `last_gates`."""
        batch, num_tasks = gate_logits.shape[0], len(self.tasks)
        # the softmax over a leading axis: on CPU, one over a last axis of a few experts is ~15x slower
        gates = gate_logits.t().reshape(num_tasks, self.config.num_experts, batch).softmax(1)
        gates = gates.permute(2, 0, 1).contiguous()  # [B, T, E]
        mixed = torch.bmm(gates, experts.transpose(0, 1)).transpose(0, 1)  # [T, B, D]
        if keep_gates:
            self.last_gates = dict(zip(self.tasks, gates.detach().unbind(1)))
        return self.towers(mixed).squeeze(-1)  # [T, B]

    def shared_modules(self) -> Iterable[nn.Module]:
        return (self.experts,)
