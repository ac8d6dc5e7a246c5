"""Tensors built once per split, and training batches as slices of them.

A split's rows become one `TensorData`: inputs `x` [N, W] (int64, layout in `Schema`), labels
`y` [N, T] (float32, NaN = missing), and the row's user, item, event and position. Batches are
index slices of a seeded permutation: no per-row Python runs in a training loop. A split larger
than memory is read a window of rows at a time instead (`recsys.data.stream`), each window
converted by the same `TensorData.from_frame`.

Example:
    >>> data = load_split("data/prepared/ml-100k", "train")          # doctest: +SKIP
    >>> for idx in batch_indices(len(data), 1024, seed=0, epoch=0):  # doctest: +SKIP
    ...     xb, yb = data.x[idx], data.y[idx]
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

from recsys.data.fields import Schema
from recsys.errors import DataValidationError

#: Label column of each task in the prepared files.
LABEL_COLUMNS: dict[str, str] = {
    "click": "click",
    "like": "like",
    "rating": "rating",
    "watch": "watch_fraction",
}

SPLITS: tuple[str, ...] = ("train", "valid", "test", "coldstart")


@dataclass
class TensorData:
    """One split as tensors (all on the same device).

    Attributes:
        x: [N, W] int64 categorical inputs.
        y: [N, T] float32 labels; NaN where a task's label is missing.
        user: [N] int64 raw user ids.
        item: [N] int64 raw item ids (the candidate).
        event: [N] int64 rank of the row's event within its user's history (0 = first). An
            event is one rated movie with its sampled negatives (MovieLens) or one slate
            (simulator); rows of one event share a timestamp and a query item.
        position: [N] int64 slate positions (1-based; 0 = unknown) or None.
        truth: simulator ground truth per row, e.g. ``{"p_click": [N], ...}``; empty otherwise.
        schema: the layout of x and y.
    """

    x: torch.Tensor
    y: torch.Tensor
    user: torch.Tensor
    item: torch.Tensor
    event: torch.Tensor
    schema: Schema
    position: torch.Tensor | None = None
    truth: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def has_position(self) -> bool:
        return self.position is not None

    def subset(self, idx: torch.Tensor) -> TensorData:
        """Rows `idx` (a LongTensor or bool mask) as a new TensorData."""
        return TensorData(
            x=self.x[idx],
            y=self.y[idx],
            user=self.user[idx],
            item=self.item[idx],
            event=self.event[idx],
            schema=self.schema,
            position=None if self.position is None else self.position[idx],
            truth={k: v[idx] for k, v in self.truth.items()},
        )

    def to(self, device: torch.device | str) -> TensorData:
        return TensorData(
            x=self.x.to(device),
            y=self.y.to(device),
            user=self.user.to(device),
            item=self.item.to(device),
            event=self.event.to(device),
            schema=self.schema,
            position=None if self.position is None else self.position.to(device),
            truth={k: v.to(device) for k, v in self.truth.items()},
        )

    @classmethod
    def cat(cls, parts: list[TensorData]) -> TensorData:
        """The rows of `parts` (same schema), one after the other."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return cls(
            x=torch.cat([p.x for p in parts]),
            y=torch.cat([p.y for p in parts]),
            user=torch.cat([p.user for p in parts]),
            item=torch.cat([p.item for p in parts]),
            event=torch.cat([p.event for p in parts]),
            schema=first.schema,
            position=None if first.position is None else torch.cat([p.position for p in parts]),
            truth={k: torch.cat([p.truth[k] for p in parts]) for k in first.truth},
        )

    def label_means(self, tasks: tuple[str, ...], *, esmm: bool = False) -> dict[str, float]:
        """Each task's mean observed label (under ESMM, like's among clicked rows); tasks
        without an observed label are left out."""
        out = {}
        schema_tasks = self.schema.tasks
        for task in tasks:
            col = self.y[:, schema_tasks.index(task)]
            if esmm and task == "like" and "click" in schema_tasks:
                col = col[self.y[:, schema_tasks.index("click")] == 1]
            col = col[~torch.isnan(col)]
            if len(col):
                out[task] = float(col.mean())
        return out

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, schema: Schema) -> TensorData:
        """Build tensors from a prepared frame (columns as written by `recsys data prepare`)."""
        missing = [c for c in _required_columns(schema) if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"prepared frame of {schema.dataset or 'data set'} lacks columns {missing}; "
                "re-run `recsys data prepare`"
            )
        n = frame.height
        x = fields_to_x(frame, schema)
        y = np.stack(
            [frame.get_column(LABEL_COLUMNS[t]).cast(pl.Float32).fill_null(np.nan).to_numpy() for t in schema.tasks],
            axis=1,
        ).astype(np.float32) if schema.tasks else np.zeros((n, 0), dtype=np.float32)
        position = None
        if schema.num_positions and "position" in frame.columns:
            position = torch.from_numpy(frame.get_column("position").to_numpy().astype(np.int64))
        truth = {
            c: torch.from_numpy(frame.get_column(c).to_numpy().astype(np.float32))
            for c in frame.columns
            if c.startswith("true_")
        }
        return cls(
            x=torch.from_numpy(x),
            y=torch.from_numpy(np.ascontiguousarray(y)),
            user=torch.from_numpy(frame.get_column("user_id").to_numpy().astype(np.int64)),
            item=torch.from_numpy(frame.get_column("item_id").to_numpy().astype(np.int64)),
            event=torch.from_numpy(frame.get_column("event").to_numpy().astype(np.int64)),
            schema=schema,
            position=position,
            truth=truth,
        )


def fields_to_x(frame: pl.DataFrame, schema: Schema, sides: tuple[str, ...] | None = None) -> np.ndarray:
    """The ``x`` [N, W] of `frame`'s ``f_*`` columns; fields of other `sides` stay 0 (PAD).

    Args:
        frame: rows with the encoded columns of the chosen fields (e.g. items.parquet for
            ``sides=("item",)``).
        schema: the layout.
        sides: which fields to fill (default all).

    Raises:
        DataValidationError: an id outside its field's vocabulary.
    """
    n = frame.height
    x = np.zeros((n, schema.width), dtype=np.int64)
    for f in schema.fields:
        if sides is not None and f.side not in sides:
            continue
        col = frame.get_column(f.name)
        values = col.to_numpy().astype(np.int64, copy=False) if f.width == 1 else _pad_lists(col, f.width)
        x[:, schema.slice(f.name)] = values.reshape(n, f.width)
        if n and (values.min() < 0 or values.max() >= f.size):
            bad = int(values.max()) if values.max() >= f.size else int(values.min())
            raise DataValidationError(
                f"column {f.name}: id {bad} outside its vocabulary [0, {f.size}); "
                "the prepared files and schema.json disagree, re-run `recsys data prepare`"
            )
    return x


def _required_columns(schema: Schema) -> list[str]:
    return ["user_id", "item_id", "event", *[f.name for f in schema.fields], *[LABEL_COLUMNS[t] for t in schema.tasks]]


def _pad_lists(col: pl.Series, width: int) -> np.ndarray:
    """A list[int] column as an [N, width] array padded with 0 (PAD); longer lists are cut."""
    return np.stack(
        [col.list.get(i, null_on_oob=True).fill_null(0).to_numpy().astype(np.int64) for i in range(width)],
        axis=1,
    ) if len(col) else np.zeros((0, width), dtype=np.int64)


def load_schema(prepared_dir: str | Path) -> Schema:
    path = Path(prepared_dir) / "schema.json"
    if not path.exists():
        raise DataValidationError(
            f"{path} not found: {prepared_dir} is not a prepared data set; run `recsys data prepare`"
        )
    return Schema.from_json(json.loads(path.read_text()))


def load_split(prepared_dir: str | Path, split: str) -> TensorData:
    """Read one split of a prepared data set as tensors.

    Args:
        prepared_dir: directory written by `recsys data prepare` or `recsys data synth`.
        split: one of ``train``, ``valid``, ``test``, ``coldstart``.
    """
    path, schema = split_file(prepared_dir, split)
    return TensorData.from_frame(pl.read_parquet(path), schema)


def split_file(prepared_dir: str | Path, split: str) -> tuple[Path, Schema]:
    """The parquet file of one split and the data set's schema.

    Raises:
        DataValidationError: an unknown split name, or a directory or file that is not there.
    """
    if split not in SPLITS:
        raise DataValidationError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    schema = load_schema(prepared_dir)
    path = Path(prepared_dir) / f"{split}.parquet"
    if not path.exists():
        raise DataValidationError(f"{path} not found; re-run `recsys data prepare`")
    return path, schema


def batch_indices(n: int, batch_size: int, *, seed: int, epoch: int = 0, shuffle: bool = True,
                  drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Index slices of a permutation of ``range(n)`` seeded by ``(seed, epoch)``.

    The same (seed, epoch) gives the same batches, so a resumed run sees the batches an
    uninterrupted one would.

    Yields:
        LongTensor [B] of row indices (B = batch_size, the last batch possibly smaller).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shuffle:
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]
