"""A prepared split read from parquet a window of rows at a time, for splits larger than memory.

`load_split` turns a whole split into tensors: 152 bytes a row for the simulator, 0.9 GiB for
the 6.3M training rows of a 10M-impression data set, and the frame being converted beside them
(a training process peaked at 2.4 GiB; `scripts/bench_stream_train.py`). `StreamedSplit` holds
at most `buffer` windows of `window` rows at once, whatever the split's size, and converts
every window with the same `TensorData.from_frame`.

Order of an epoch, a function of (seed, epoch) only:

1. the split's windows (rows ``[k * window, (k + 1) * window)`` of the file) in a seeded order;
2. consecutive windows of that order taken `buffer` at a time as a *block*; a block's rows are
   shuffled by a seed of (seed, epoch, block) and cut into batches, the rows left over from one
   block filling the first batch of the next.

A batch therefore mixes rows of `buffer` random regions of the file, not the whole split as the
in-memory path's full permutation does. Prepared files are ordered by user, so a window holds
the consecutive events of a few hundred users and a batch sees fewer distinct users than a
uniform sample would: the gradient noise is a little more correlated within a block. A larger
`buffer` (or smaller windows, more of them) mixes better for the same memory; a true full
permutation would read a window per batch (random access) or hold the split.

Because a block's shuffle depends on nothing before it, batch ``b`` of an epoch is found from
the window sizes alone: a resumed run reads the block holding row ``b * batch_size`` and the
blocks after it, never the earlier ones.

Example:
    >>> split = StreamedSplit("data/prepared/synth", "train", window=100_000)  # doctest: +SKIP
    >>> for batch in split.batches(1024, seed=0, epoch=0):                      # doctest: +SKIP
    ...     xb, yb = batch.x, batch.y                                            # [B, W], [B, T]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import torch

from recsys.data.tensors import LABEL_COLUMNS, TensorData, split_file
from recsys.errors import ConfigError

#: Windows shuffled together: memory holds up to this many windows of rows.
BUFFER = 4


def read_rows(path: Path, offset: int, length: int) -> pl.DataFrame:
    """Rows ``[offset, offset + length)`` of a parquet file.

    Polars pushes the slice into the scan, so only the row groups (and pages) that hold those
    rows are decoded; prepared files are written in row groups of 2^20 rows.
    """
    return pl.scan_parquet(path).slice(offset, length).collect()


class StreamedSplit:
    """One split of a prepared data set, read `window` rows at a time.

    Args:
        prepared_dir: directory written by `recsys data prepare` or `recsys data synth`.
        split: ``train``, ``valid``, ``test`` or ``coldstart``.
        window: rows per read.
        buffer: windows shuffled together in `batches` (memory: ``buffer * window`` rows).
        device: where the windows and batches are put.

    Attributes:
        rows: rows in the split (``len(split)``), read from the file's metadata.
        schema: the data set's layout.
        has_position: the rows carry slate positions.
    """

    def __init__(self, prepared_dir: str | Path, split: str, *, window: int, buffer: int = BUFFER,
                 device: torch.device | str = "cpu") -> None:
        if window < 1 or buffer < 1:
            raise ConfigError(f"stream window and buffer must be >= 1 rows / windows, got {window}, {buffer}")
        self.path, self.schema = split_file(prepared_dir, split)
        self.window, self.buffer, self.device = int(window), int(buffer), torch.device(device)
        scan = pl.scan_parquet(self.path)
        self.rows = int(scan.select(pl.len()).collect().item())
        self.has_position = bool(self.schema.num_positions) and "position" in scan.collect_schema().names()

    def __len__(self) -> int:
        return self.rows

    @property
    def num_windows(self) -> int:
        return math.ceil(self.rows / self.window)

    def num_batches(self, batch_size: int) -> int:
        """Batches per epoch (the last one possibly smaller), as `batch_indices` gives in memory."""
        return math.ceil(self.rows / batch_size)

    def read_window(self, k: int) -> TensorData:
        """Window `k` (rows ``[k * window, (k + 1) * window)``) as tensors on the device."""
        frame = read_rows(self.path, k * self.window, self.window)
        return TensorData.from_frame(frame, self.schema).to(self.device)

    def windows(self) -> Iterator[TensorData]:
        """The split's windows in file order (for prediction over a large split)."""
        for k in range(self.num_windows):
            yield self.read_window(k)

    def window_order(self, *, seed: int, epoch: int) -> np.ndarray:
        """The epoch's order of window indices: [num_windows]."""
        return np.random.default_rng([seed, epoch]).permutation(self.num_windows)

    def batches(self, batch_size: int, *, seed: int, epoch: int = 0, start: int = 0) -> Iterator[TensorData]:
        """The epoch's batches from batch `start` on; see the module docstring for the order.

        Args:
            batch_size: rows per batch (B); the epoch's last batch may be smaller.
            seed, epoch: the order is a function of these.
            start: the first batch to yield (0 = the whole epoch); the blocks before the one that
                holds its first row are not read.

        Yields:
            TensorData batches of B rows, `num_batches(batch_size) - start` of them.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= start <= self.num_batches(batch_size):
            raise ValueError(f"start must be in [0, {self.num_batches(batch_size)}], got {start}")
        order = self.window_order(seed=seed, epoch=epoch)
        blocks = [order[i : i + self.buffer] for i in range(0, len(order), self.buffer)]
        sizes = [sum(self._window_rows(k) for k in block) for block in blocks]
        ends = np.cumsum(sizes)
        first_row = start * batch_size
        first = int(np.searchsorted(ends, first_row, side="right"))
        skip = first_row - (int(ends[first - 1]) if first else 0)
        pending: list[TensorData] = []  # rows of the batch being filled, across a block boundary
        have = 0
        for j in range(first, len(blocks)):
            block = TensorData.cat([self.read_window(int(k)) for k in blocks[j]])
            perm = torch.from_numpy(np.random.default_rng([seed, epoch, j]).permutation(len(block))).to(self.device)
            i = skip if j == first else 0
            while i < len(perm):
                take = min(batch_size - have, len(perm) - i)
                pending.append(block.subset(perm[i : i + take]))
                have, i = have + take, i + take
                if have == batch_size:
                    yield TensorData.cat(pending)
                    pending, have = [], 0
            del block, perm
        if have:
            yield TensorData.cat(pending)

    def label_means(self, tasks: tuple[str, ...], *, esmm: bool = False) -> dict[str, float]:
        """`TensorData.label_means` of the whole split, from its label columns only (polars'
        streaming engine: bounded memory)."""
        exprs = []
        for task in tasks:
            col = pl.col(LABEL_COLUMNS[task]).cast(pl.Float32).fill_nan(None)
            if esmm and task == "like" and "click" in self.schema.tasks:
                col = col.filter(pl.col(LABEL_COLUMNS["click"]).cast(pl.Float32) == 1)
            exprs.append(col.mean().alias(task))
        row = pl.scan_parquet(self.path).select(exprs).collect(engine="streaming").row(0, named=True)
        return {t: float(v) for t, v in row.items() if v is not None}

    def _window_rows(self, k: int) -> int:
        return min(self.window, self.rows - int(k) * self.window)
