"""Each row's recent history: the items its user engaged with in earlier events.

The two-tower retriever's user tower reads a user's last L clicked items (Covington et al.,
RecSys'16: "watch history"), causally: a row at event e sees only clicks of events < e. Rows
of several splits of one user (train, valid, test) are concatenated in event order first, so a
test row's history includes that user's training clicks, as it would in production.

Shapes: N rows, L history length.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.data.fields import PAD


def recent_clicks(user: torch.Tensor, event: torch.Tensor, item_ids: torch.Tensor, clicked: torch.Tensor,
                  *, length: int = 20) -> torch.Tensor:
    """The last `length` clicked items before each row's event, most recent last, PAD-padded.

    Args:
        user: [N] user of each row.
        event: [N] event rank of each row within its user.
        item_ids: [N] encoded candidate item id of each row (the f_item_id column).
        clicked: [N] bool, the row was a click.
        length: L.

    Returns:
        [N, L] int64 encoded item ids, PAD (0) where the user has fewer earlier clicks.
    """
    rows, start, end = _earlier_clicks(user, event, clicked)
    click_items = item_ids.numpy()[rows]
    idx = end[:, None] - length + np.arange(length)[None, :]
    valid = idx >= start[:, None]
    out = np.where(valid, click_items[np.clip(idx, 0, max(0, len(click_items) - 1))] if len(click_items) else PAD, PAD)
    return torch.from_numpy(out.astype(np.int64))


def earlier_click_counts(user: torch.Tensor, event: torch.Tensor, clicked: torch.Tensor) -> torch.Tensor:
    """[N] int64: how many clicks each row's user made at events before the row's event."""
    _, start, end = _earlier_clicks(user, event, clicked)
    return torch.from_numpy((end - start).astype(np.int64))


def _earlier_clicks(user: torch.Tensor, event: torch.Tensor, clicked: torch.Tensor
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clicks sorted by (user, event), and each row's range of them before its event.

    Returns:
        (rows [C]: the indices of the clicked rows in (user, event) order,
         start [N], end [N]: row n's user's clicks at earlier events are ``rows[start[n]:end[n]]``).
    """
    u = user.numpy().astype(np.int64)
    e = event.numpy().astype(np.int64)
    c = clicked.numpy().astype(bool)
    span = int(e.max()) + 2 if len(e) else 1
    click_key = u[c] * span + e[c]
    order = np.argsort(click_key, kind="stable")
    click_key = click_key[order]
    # clicks of the same user with an earlier event: [user*span, user*span + e)
    end = np.searchsorted(click_key, u * span + e, side="left")
    start = np.searchsorted(click_key, u * span, side="left")
    return np.flatnonzero(c)[order], start, end
