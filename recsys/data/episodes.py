"""Users as tasks: support / query episodes for meta-learning and cold-start evaluation.

A user's rows, in event order, split into support = the rows of their first K events and
query = the rows of later events (CS330's N-way K-shot episodes, with a user as the task). The
same construction serves meta-training (warm users' training rows) and testing (the held-out
new users' rows), so train and test conditions match.

Episodes come padded as one batch, ready for `torch.func.vmap` over users:

    support_x [U, S, W]  support_y [U, S, T]  support_mask [U, S]
    query_x   [U, Q, W]  query_y   [U, Q, T]  query_mask   [U, Q]

Example:
    >>> episodes = EpisodeSampler(load_split(prepared, "coldstart"))   # doctest: +SKIP
    >>> batch = episodes.batch(k=5)                                       # doctest: +SKIP
    >>> batch.support_x.shape                                             # doctest: +SKIP
    torch.Size([189, 25, 21])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recsys.data.tensors import TensorData
from recsys.errors import ConfigError, UnknownIdError


@dataclass
class EpisodeBatch:
    """U users' episodes, padded (mask False on padding rows)."""

    users: torch.Tensor         # [U] raw user ids
    support_x: torch.Tensor     # [U, S, W]
    support_y: torch.Tensor     # [U, S, T]
    support_mask: torch.Tensor  # [U, S] bool
    query_x: torch.Tensor       # [U, Q, W]
    query_y: torch.Tensor       # [U, Q, T]
    query_mask: torch.Tensor    # [U, Q] bool
    support_rows: torch.Tensor  # [U, S] row indices into the source TensorData (-1 = padding)
    query_rows: torch.Tensor    # [U, Q]
    k: int

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def to(self, device: torch.device | str) -> EpisodeBatch:
        """The same episodes on `device` (samplers build them on the CPU; adapters run where the ranker is)."""
        return EpisodeBatch(**{f: getattr(self, f).to(device) if isinstance(getattr(self, f), torch.Tensor)
                               else getattr(self, f) for f in self.__dataclass_fields__})


class EpisodeSampler:
    """Builds support/query episodes from one split's rows.

    Args:
        data: a split's tensors; rows are grouped by user and ordered by event (as prepared).
    """

    def __init__(self, data: TensorData) -> None:
        order = torch.argsort(data.user * (int(data.event.max()) + 1 if len(data) else 1) + data.event, stable=True)
        self.data = data if torch.equal(order, torch.arange(len(data))) else data.subset(order)
        self.users, counts = torch.unique_consecutive(self.data.user, return_counts=True)
        self.start = torch.cumsum(counts, 0) - counts        # [U] first row of each user
        self.rows = counts                                    # [U] rows per user
        self._user_pos = torch.arange(len(self.users)).repeat_interleave(counts)  # [N] row -> user position
        # Event rank relative to the user's first event in this split (valid/test start later).
        self._rel_event = self.data.event - self.data.event[self.start][self._user_pos]
        self.events = torch.zeros(len(self.users), dtype=torch.long).scatter_reduce(
            0, self._user_pos, self._rel_event + 1, reduce="amax", include_self=True
        )  # [U] events per user

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def eligible(self, k: int, *, min_query_events: int = 1) -> torch.Tensor:
        """Positions of users with more than k events (so the query set is non-empty)."""
        return torch.nonzero(self.events >= k + min_query_events).flatten()

    def support_size(self, k: int) -> torch.Tensor:
        """[U] rows of each user's first k events."""
        in_support = (self._rel_event < k).long()
        return torch.zeros(len(self.users), dtype=torch.long).index_add_(0, self._user_pos, in_support)

    def positions(self, user_ids: torch.Tensor) -> torch.Tensor:
        """Positions (in `self.users`) of raw user ids; unknown ids raise `UnknownIdError`."""
        pos = torch.searchsorted(self.users, user_ids)
        ok = (pos < len(self.users)) & (self.users[pos.clamp(max=len(self.users) - 1)] == user_ids)
        if not bool(ok.all()):
            bad = int(user_ids[~ok][0])
            raise UnknownIdError(f"user {bad} has no rows in this split")
        return pos

    def batch(self, k: int, users: torch.Tensor | None = None, *, max_query: int | None = None,
              min_query_events: int = 1) -> EpisodeBatch:
        """Episodes for `users` (positions; default every eligible user) with K = `k` events of support.

        Args:
            k: support events per user (0 gives an empty support set).
            users: [U] positions into `self.users`; defaults to `eligible(k)`.
            max_query: keep at most this many query rows per user (the earliest ones).
            min_query_events: with `users` None, skip users with fewer later events.

        Returns:
            The padded `EpisodeBatch`.
        """
        if k < 0:
            raise ConfigError(f"support size k must be >= 0, got {k}")
        if users is None:
            users = self.eligible(k, min_query_events=min_query_events)
        n_support = self.support_size(k)[users]
        n_query = self.rows[users] - n_support
        if max_query is not None:
            n_query = n_query.clamp(max=max_query)
        start = self.start[users]
        support_rows, support_mask = _ranges(start, n_support)
        query_rows, query_mask = _ranges(start + n_support, n_query)
        d = self.data
        return EpisodeBatch(
            users=self.users[users],
            support_x=d.x[support_rows.clamp(min=0)], support_y=d.y[support_rows.clamp(min=0)],
            support_mask=support_mask,
            query_x=d.x[query_rows.clamp(min=0)], query_y=d.y[query_rows.clamp(min=0)],
            query_mask=query_mask,
            support_rows=support_rows, query_rows=query_rows, k=k,
        )

    def sample(self, n_users: int, k: int, *, generator: torch.Generator, max_query: int | None = None
               ) -> EpisodeBatch:
        """A random batch of `n_users` eligible users (for meta-training), seeded by `generator`."""
        pool = self.eligible(k)
        if len(pool) == 0:
            raise ConfigError(f"no user has more than {k} events; lower k")
        pick = pool[torch.randperm(len(pool), generator=generator)[:n_users]]
        return self.batch(k, pick, max_query=max_query)


def _ranges(start: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[U, max(count)] row indices start..start+count-1, padded with -1, and the validity mask."""
    width = int(count.max()) if len(count) else 0
    offsets = torch.arange(width)
    mask = offsets[None, :] < count[:, None]
    rows = torch.where(mask, start[:, None] + offsets[None, :], torch.full_like(mask, -1, dtype=torch.long))
    return rows, mask
