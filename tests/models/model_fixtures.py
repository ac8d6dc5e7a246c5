"""A tiny hand-built schema and random valid inputs for the model tests (a plain module:
importable by name from the test files, unlike conftest)."""

from __future__ import annotations

import torch

from recsys.data.fields import Field, Schema

FIELDS = (
    Field("f_user_id", "user", "user", 6),
    Field("f_user_age", "user", "age", 4),
    Field("f_item_id", "item", "item", 9),
    Field("f_item_genres", "item", "genre", 5, width=3),
    Field("f_query_id", "query", "item", 9),
    Field("f_query_genres", "query", "genre", 5, width=3),
)
TASKS = ("click", "like", "rating")


def tiny_schema() -> Schema:
    """No positions (MovieLens-like); item and query share the item and genre vocabularies."""
    return Schema(fields=FIELDS, tasks=TASKS, dataset="tiny")


def tiny_schema_with_positions() -> Schema:
    """With slate positions 1..5 and a device-like context field (simulator-like)."""
    return Schema(fields=(*FIELDS, Field("f_device", "context", "device", 3)), tasks=TASKS,
                  num_positions=5, dataset="tiny-slates")


def make_x(schema: Schema, batch: int, seed: int = 0) -> torch.Tensor:
    """Random valid ids: multi-valued fields hold 0..width distinct ids, left-aligned, PAD after."""
    g = torch.Generator().manual_seed(seed)
    cols = []
    for f in schema.fields:
        if f.width == 1:
            cols.append(torch.randint(0, f.size, (batch, 1), generator=g))
        else:
            ids = torch.stack([torch.randperm(f.size - 2, generator=g)[: f.width] + 2 for _ in range(batch)])
            count = torch.randint(0, f.width + 1, (batch, 1), generator=g)
            cols.append(ids.masked_fill(torch.arange(f.width) >= count, 0))
    return torch.cat(cols, 1)


def make_position(schema: Schema, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randint(1, schema.num_positions + 1, (batch,), generator=g)
