"""One interface over nearest-neighbour indexes for maximum inner-product search.

Every index is built from item vectors and their ids, searched with query vectors, and tuned to
a stated recall target against exact search. The vectors are the source of truth: an index is
rebuilt from saved embeddings, never loaded from an index file (a FAISS file from an untrusted
place is code-adjacent binary we do not read).

Guarantees of every index, whatever FAISS does underneath:
  * vectors and queries are checked: 2-D, the index's dimension, finite; float64 is cast to
    float32, anything else is an error naming the problem (FAISS itself raises a bare
    `AssertionError` on a wrong dimension and returns id −1 for NaN queries);
  * ``k`` is clamped to the number of items; a ``k < 1`` is an error;
  * the −1 padding id never comes back: rows an approximate index could not fill are searched
    again exactly.

Shapes: N items, Q queries, D dimension, K results.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from recsys.errors import ConfigError, DataValidationError


class VectorIndex:
    """Base class; subclasses implement `_build`, `_search` and `_set_search_knob`.

    Args:
        dim: vector dimension D.
        threads: FAISS/torch threads used by `search` (1 per serving request is fastest on
            shared cores).
        **params: index parameters; unknown keys raise `ConfigError`.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    #: the search-time knob `tune` walks (None: the index is exact)
    knob: ClassVar[str | None] = None
    knob_values: ClassVar[tuple[int, ...]] = ()

    def __init__(self, dim: int, *, threads: int = 1, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {unknown} for index {self.name!r} "
                              f"(known: {', '.join(sorted(self.defaults)) or 'none'})")
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"index dimension must be a positive integer, got {dim!r}")
        self.dim = dim
        self.threads = threads
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.vectors: np.ndarray | None = None
        self.ids: np.ndarray | None = None

    # ------------------------------------------------------------------ public

    @property
    def size(self) -> int:
        return 0 if self.ids is None else len(self.ids)

    def build(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> VectorIndex:
        """Index `vectors` [N, D] under `ids` [N] (default 0..N-1; unique int64)."""
        vectors = self._checked(vectors, what="item vectors")
        if len(vectors) == 0:
            raise DataValidationError("cannot build an index from 0 item vectors")
        ids = np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids)
        if ids.shape != (len(vectors),) or not np.issubdtype(ids.dtype, np.integer):
            raise DataValidationError(f"ids must be {len(vectors)} integers (one per vector), got shape {ids.shape}, "
                                      f"dtype {ids.dtype}")
        if len(np.unique(ids)) != len(ids):
            raise DataValidationError("item ids must be unique")
        self.vectors, self.ids = vectors, ids.astype(np.int64)
        self._build(vectors)
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by inner product.

        Args:
            queries: [Q, D] (or [D] for one query).
            k: results per query, clamped to the number of items.

        Returns:
            (scores [Q, K] float32, ids [Q, K] int64), best first; never −1.
        """
        if self.vectors is None:
            raise ConfigError(f"index {self.name!r} is empty: call build() first")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        q = self._checked(np.atleast_2d(queries), what="queries")
        k = int(min(k, self.size))
        scores, rows = self._search(q, k)
        missing = (rows < 0).any(axis=1)
        if missing.any():  # an approximate index could not fill some rows: redo them exactly
            scores[missing], rows[missing] = exact_topk(self.vectors, q[missing], k, threads=self.threads)
        return scores, self.ids[rows]

    def tune(self, queries: np.ndarray, *, k: int, target_recall: float) -> dict[str, Any]:
        """Pick the cheapest search knob value whose recall@k against exact search ≥ target.

        Args:
            queries: [Q, D] sample queries (e.g. real user vectors).
            k: the k that recall is measured at.
            target_recall: e.g. 0.95.

        Returns:
            ``{"knob", "value", "recall", "reached"}``; the index keeps the chosen value.
        """
        if self.knob is None:
            return {"knob": None, "value": None, "recall": 1.0, "reached": True}
        truth = self._checked(np.atleast_2d(queries), what="queries")
        _, exact = exact_topk(self.vectors, truth, min(k, self.size), threads=self.threads)
        exact_ids = self.ids[exact]
        recall = 0.0
        for value in self.knob_values:
            self._set_search_knob(value)
            _, rows = self._search(truth, min(k, self.size))  # raw: unfilled slots (−1) count as misses
            got = np.where(rows >= 0, self.ids[rows], -1)
            recall = recall_at_k(got, exact_ids)
            if recall >= target_recall:
                return {"knob": self.knob, "value": value, "recall": recall, "reached": True}
        return {"knob": self.knob, "value": self.knob_values[-1], "recall": recall, "reached": False}

    # ------------------------------------------------------------------ for subclasses

    def _build(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores [Q, k], row positions [Q, k]) with −1 where unfilled."""
        raise NotImplementedError

    def _set_search_knob(self, value: int) -> None:
        raise NotImplementedError

    def _checked(self, a: np.ndarray, *, what: str) -> np.ndarray:
        a = np.asarray(a)
        if a.ndim != 2:
            raise DataValidationError(f"{what} must be a 2-D array [n, {self.dim}], got shape {a.shape}")
        if a.shape[1] != self.dim:
            raise DataValidationError(f"{what} have dimension {a.shape[1]}, the index has {self.dim}")
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        if a.dtype != np.float32:
            raise DataValidationError(f"{what} must be float32 (or float64), got {a.dtype}")
        finite = np.isfinite(a).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise DataValidationError(f"{what}: {int((~finite).sum())} row(s) hold NaN or inf, first at row {row}")
        return np.ascontiguousarray(a)


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int, *, threads: int = 1,
               chunk: int = 1 << 14) -> tuple[np.ndarray, np.ndarray]:
    """Exact maximum inner-product top-k with a torch matmul + top-k, chunked over items.

    Faster than FAISS's `IndexFlatIP` on CPU for batched queries (one GEMM instead of its
    blocked BLAS + heap), and the reference every approximate index is measured against.

    Returns:
        (scores [Q, k] float32, row positions [Q, k] int64), best first.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        items = torch.from_numpy(vectors)
        q = torch.from_numpy(queries)
        best_s = best_i = None
        for start in range(0, len(items), chunk):
            block = q @ items[start:start + chunk].T  # [Q, C]
            s, i = block.topk(min(k, block.shape[1]), dim=1)
            i = i + start
            if best_s is None:
                best_s, best_i = s, i
            else:
                s = torch.cat([best_s, s], 1)
                i = torch.cat([best_i, i], 1)
                best_s, pos = s.topk(k, dim=1)
                best_i = i.gather(1, pos)
        return best_s.numpy(), best_i.numpy()
    finally:
        torch.set_num_threads(previous)


def recall_at_k(got: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of `truth` [Q, K] found in the same row of `got` [Q, K']."""
    hits = [len(np.intersect1d(g, t, assume_unique=False)) / max(1, len(t)) for g, t in zip(got, truth)]
    return float(np.mean(hits)) if hits else 0.0
