"""Progressive Layered Extraction (PLE), Tang et al., "Progressive Layered Extraction (PLE): A
Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys'20.

PLE separates shared experts from task-specific ones so that tasks which conflict keep
private capacity (MMoE lets every task's gate reach every expert, which the paper shows can
still give a seesaw between tasks). One Customized Gate Control (CGC) level has, per task,
`task_experts` private experts and a gate over [its own experts, the shared experts]; a shared
gate over all experts feeds the shared experts of the next level. L levels are stacked; the
last one has no shared gate, and each task's tower reads its own path.

    level input:  h_t (one per task), h_s (shared); at level 1 both are the embeddings
    h_t' = sum_k g_t(h_t)_k * [experts_t(h_t), experts_s(h_s)]_k
    h_s' = sum_k g_s(h_s)_k * [experts_1(h_1) .. experts_T(h_T), experts_s(h_s)]_k

Shapes: B batch, F fields, D hidden, T tasks, E experts one gate mixes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from recsys.data.fields import Schema
from recsys.models.base import Ranker, RankerConfig
from recsys.models.layers import ParallelMLP, SplitInput


@dataclass(frozen=True)
class PLEConfig(RankerConfig):
    """Attributes:
    expert_hidden: one CGC level per entry, the width of that level's experts (Linear → ReLU).
    shared_experts: shared experts per level; task_experts: private experts per task and level.
    tower_hidden: hidden widths of each task tower.
    """

    expert_hidden: tuple[int, ...] = (256, 128)
    shared_experts: int = 2
    task_experts: int = 1
    tower_hidden: tuple[int, ...] = (64,)


class CGC(nn.Module):
    """One Customized Gate Control level of PLE.

    Args:
        num_tasks: T.
        in_dim: width of the level's inputs.
        out_dim: width D of every expert.
        task_experts: private experts per task.
        shared_experts: shared experts.
        last: the last level has no shared gate (nothing reads a shared output after it).
        dropout: dropout after each expert.

    Shapes:
        task_in [T, B, in] (or [B, in], the same for all tasks), shared_in [B, in]
        → task_out [T, B, D], shared_out [B, D] (None on the last level), gates [T, B, E]
        with E = task_experts + shared_experts, own experts first.
    """

    def __init__(self, num_tasks: int, in_dim: int, out_dim: int, *, task_experts: int, shared_experts: int,
                 last: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_tasks, self.num_task_experts = num_tasks, task_experts
        self.task_experts = ParallelMLP(num_tasks * task_experts, in_dim, (out_dim,), dropout)  # task-major
        self.shared_experts = ParallelMLP(shared_experts, in_dim, (out_dim,), dropout)
        self.task_gates = ParallelMLP(num_tasks, in_dim, (), out_dim=task_experts + shared_experts)
        self.shared_gate = None if last else nn.Linear(in_dim, num_tasks * task_experts + shared_experts)

    def forward(self, task_in: torch.Tensor, shared_in: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        k = self.num_task_experts
        expert_in = task_in.repeat_interleave(k, 0) if task_in.dim() == 3 and k > 1 else task_in
        shared_gate = None if self.shared_gate is None else self.shared_gate(shared_in)
        return self._mix(self.task_experts(expert_in), self.shared_experts(shared_in), self.task_gates(task_in),
                         shared_gate)

    def forward_split(self, h: SplitInput) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """`forward(h.full(), h.full())` (the first level: every input is h) with the request
        part of every expert's and gate's first layer computed once."""
        shared_gate = None if self.shared_gate is None else h.linear(self.shared_gate)
        return self._mix(self.task_experts.forward_split(h), self.shared_experts.forward_split(h),
                         self.task_gates.forward_split(h), shared_gate)

    def _mix(self, own: torch.Tensor, shared: torch.Tensor, gate_logits: torch.Tensor,
             shared_gate_logits: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Experts (own [T*k, B, D], shared [S, B, D]) mixed by the gates' logits ([T, B, k+S], [B, T*k+S])."""
        t, k = self.num_tasks, self.num_task_experts
        gates = gate_logits.softmax(-1)  # [T, B, k+S]
        task_out = (torch.einsum("tbk,tkbd->tbd", gates[..., :k], own.view(t, k, *own.shape[1:]))
                    + torch.einsum("tbs,sbd->tbd", gates[..., k:], shared))
        shared_out = None
        if shared_gate_logits is not None:
            g = shared_gate_logits.softmax(-1)  # [B, T*k+S]
            shared_out = (torch.einsum("be,ebd->bd", g[:, : t * k], own)
                          + torch.einsum("bs,sbd->bd", g[:, t * k :], shared))
        return task_out, shared_out, gates


class PLE(Ranker):
    """Stacked CGC levels with shared and task-specific experts, one tower per task.

    Args:
        schema: layout of `x`.
        tasks: tasks to predict (default: the schema's).
        config: `PLEConfig`.

    Attributes:
        last_gates: ``{task: [B, E]}`` the task gates of the last level in the last forward
            pass (detached; rows sum to 1).
        gate_labels: ``{task: (expert name, ...)}``, e.g. ``("click/0", "shared/0", "shared/1")``.

    Shapes:
        x [B, W] → {task: [B]}

    Example:
        >>> from recsys.data.fields import Field, Schema
        >>> schema = Schema(fields=(Field("f_user_id", "user", "user", 10),
        ...                         Field("f_item_id", "item", "item", 20)), tasks=("click", "like"))
        >>> model = PLE(schema)
        >>> out = model(torch.tensor([[2, 5], [3, 7]]))
        >>> model.last_gates["click"].shape, model.gate_labels["click"]
        (torch.Size([2, 3]), ('click/0', 'shared/0', 'shared/1'))
    """

    name = "ple"
    config_class = PLEConfig

    def __init__(self, schema: Schema, tasks: Sequence[str] | None = None, config: PLEConfig | None = None) -> None:
        super().__init__(schema, tasks, config)
        c, widths = self.config, (self.in_dim, *self.config.expert_hidden)
        self.levels = nn.ModuleList(
            CGC(len(self.tasks), widths[i], widths[i + 1], task_experts=c.task_experts,
                shared_experts=c.shared_experts, last=i == len(c.expert_hidden) - 1, dropout=c.dropout)
            for i in range(len(c.expert_hidden))
        )
        self.towers = ParallelMLP(len(self.tasks), widths[-1], c.tower_hidden, c.dropout, out_dim=1)
        self.gate_labels = {
            t: tuple(f"{t}/{i}" for i in range(c.task_experts)) + tuple(f"shared/{i}" for i in range(c.shared_experts))
            for t in self.tasks
        }
        self.last_gates: dict[str, torch.Tensor] = {}

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        task_h, shared_h = h, h
        for level in self.levels:
            task_h, shared_h, gates = level(task_h, shared_h)
        self.last_gates = dict(zip(self.tasks, gates.detach().unbind(0)))
        return self.towers(task_h).squeeze(-1)  # [T, B]

    def scores_split(self, h: SplitInput) -> torch.Tensor:
        task_h, shared_h, gates = self.levels[0].forward_split(h)
        for level in self.levels[1:]:
            task_h, shared_h, gates = level(task_h, shared_h)
        return self.towers(task_h).squeeze(-1)  # [T, B]; serving keeps no gates for diagnostics

    def shared_modules(self) -> Iterable[nn.Module]:
        return list(self._shared_modules())

    def _shared_modules(self) -> Iterator[nn.Module]:
        # A module is shared when some task other than its own depends on it: through the
        # shared gate, which mixes every expert of its level into the next shared input.
        last = len(self.levels) - 1
        for i, level in enumerate(self.levels):
            yield level.shared_experts
            if i < last:  # a shared gate reads this level's task experts
                yield level.task_experts
                yield level.shared_gate
            if i < last - 1:  # feeds the next level's task experts, which are shared
                yield level.task_gates
