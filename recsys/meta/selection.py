"""Episodes of validation (or test) new users, and the score every adapter is selected on.

Selection, early stopping and the quick offline check all measure the same thing: adapt each
user on the rows of their first K events, then score their *query rows*, the rows of every
event after the first `query_after` (20 by default, so the query set is the same for every
K <= 20), and pool the predictions over users. The score is the pooled AUC of ``like`` (the
satisfaction task, read as p(like) = p(click) p(like | click) under ESMM); a ranker without
like uses the mean AUC of its binary tasks, and one without binary tasks minus the MSE.

Shapes: U users, S support rows, Q query rows of all users together, W columns, T tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from recsys.data.episodes import EpisodeBatch, EpisodeSampler
from recsys.data.fields import TASK_KINDS
from recsys.errors import ConfigError
from recsys.metrics import auc
from recsys.mtl.losses import predict_proba


@dataclass
class Support:
    """Padded support sets of U users: x [U, S, W], y [U, S, T], mask [U, S]."""

    x: Tensor
    y: Tensor
    mask: Tensor

    def user(self, u: int) -> tuple[Tensor, Tensor]:
        """User u's unpadded (x [S_u, W], y [S_u, T])."""
        keep = self.mask[u]
        return self.x[u][keep], self.y[u][keep]


class EvalEpisodes:
    """Support sets at several K and fixed query rows for the users of one sampler.

    Args:
        sampler: the users' rows (e.g. the validation new users' cold-start rows).
        tasks: the ranker's tasks (label columns are reordered to them).
        query_after: query rows are those of events after the first `query_after`.
        users: positions of users to use (default: every user with more events than that).
        max_query: keep at most this many query rows per user (the earliest).
        device: where the support and query tensors live (the ranker's device).
    """

    def __init__(self, sampler: EpisodeSampler, tasks: tuple[str, ...], *, query_after: int = 20,
                 users: Tensor | None = None, max_query: int | None = None,
                 device: torch.device | str = "cpu") -> None:
        schema_tasks = tuple(sampler.data.schema.tasks)
        missing = [t for t in tasks if t not in schema_tasks]
        if missing:
            raise ConfigError(f"episodes have no labels for task(s) {missing} (they have {list(schema_tasks)})")
        self.sampler, self.tasks, self.query_after = sampler, tuple(tasks), query_after
        self.cols = torch.tensor([schema_tasks.index(t) for t in tasks], dtype=torch.long)
        self.users = sampler.eligible(query_after) if users is None else users
        if len(self.users) == 0:
            raise ConfigError(f"no user has more than {query_after} events to build query rows from; "
                              "lower query_after or use more users")
        self.device = torch.device(device)
        q = sampler.batch(query_after, self.users, max_query=max_query).to(self.device)
        self.query_x = q.query_x[q.query_mask]                      # [Q, W]
        self.query_y = q.query_y[q.query_mask][:, self.cols]        # [Q, T]
        counts = q.query_mask.sum(1).cpu()
        self.query_user = torch.arange(len(self.users)).repeat_interleave(counts)  # [Q]
        self.query_start = torch.cumsum(counts, 0) - counts
        self.query_count = counts
        self._support: dict[int, Support] = {}

    def __len__(self) -> int:
        return int(len(self.users))

    def support(self, k: int) -> Support:
        """Padded support sets of the first k events of each user."""
        if k not in self._support:
            b = self.sampler.batch(k, self.users).to(self.device)
            self._support[k] = Support(b.support_x, b.support_y[..., self.cols], b.support_mask)
        return self._support[k]

    def query(self, u: int) -> tuple[Tensor, Tensor]:
        """User u's query rows (x [Q_u, W], y [Q_u, T])."""
        s, n = int(self.query_start[u]), int(self.query_count[u])
        return self.query_x[s:s + n], self.query_y[s:s + n]

    def score(self, raw: dict[str, Tensor], *, esmm: bool, task: str | None = None) -> float:
        """Pooled selection score of raw outputs {task: [Q]} over all query rows (higher is better)."""
        return selection_score(raw, self.query_y, self.tasks, esmm=esmm, task=task)


def selection_score(raw: dict[str, Tensor], y: Tensor, tasks: tuple[str, ...], *, esmm: bool,
                    task: str | None = None) -> float:
    """Like AUC (see the module docstring) of raw outputs {task: [Q]} against labels y [Q, T].

    Args:
        task: score this task instead (AUC for binary tasks, minus MSE for regression).
    """
    preds = predict_proba(raw, tasks, esmm)
    chosen = [task] if task is not None else (["like"] if "like" in tasks else
                                               [t for t in tasks if TASK_KINDS[t] == "binary"] or list(tasks))
    values = []
    for t in chosen:
        label = y[:, tasks.index(t)]
        seen = ~torch.isnan(label)
        p, lab = preds[t][seen].double().cpu().numpy(), label[seen].double().cpu().numpy()
        if TASK_KINDS[t] == "binary":
            a = auc(lab, p)
            values.append(float("nan") if a is None else a)
        else:
            values.append(-float(np.mean((p - lab) ** 2)))
    return float(np.mean(values))


def adapter_predictions(adapt: Callable[[Tensor, Tensor], Callable[[Tensor], dict[str, Tensor]]],
                        episodes: EvalEpisodes, k: int) -> dict[str, Tensor]:
    """Adapt each user on k events with `adapt(support_x, support_y)` and score their query rows.

    Returns:
        {task: [Q]} raw scores, in the order of `episodes.query_x`.
    """
    support = episodes.support(k)
    chunks: dict[str, list[Tensor]] = {}
    for u in range(len(episodes)):
        sx, sy = support.user(u)
        qx, _ = episodes.query(u)
        with torch.no_grad():
            out = adapt(sx, sy)(qx)
        for t, v in out.items():
            chunks.setdefault(t, []).append(v.detach())
    return {t: torch.cat(v) for t, v in chunks.items()}


def batch_tensors(batch: EpisodeBatch, cols: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(support_x, support_y, support_mask, query_x, query_y, query_mask) with labels in task order."""
    return (batch.support_x, batch.support_y[..., cols], batch.support_mask,
            batch.query_x, batch.query_y[..., cols], batch.query_mask)
