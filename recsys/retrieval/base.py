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

Recall against exact search counts ties (`tie_recall_at_k`, the definition of ann-benchmarks):
a result is a hit when it scores at least the exact k-th score. Learned item vectors hold exact
duplicates (items the model cannot tell apart, e.g. every item outside the training vocabulary
with the same features), and which copies of a tie an index returns is arbitrary.

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
            ``{"knob", "value", "recall", "id_recall", "reached"}``: `recall` counts ties
            (`tie_recall_at_k`), `id_recall` only the exact result's own ids; the index keeps
            the chosen value.
        """
        if self.knob is None:
            return {"knob": None, "value": None, "recall": 1.0, "id_recall": 1.0, "reached": True}
        truth = self._checked(np.atleast_2d(queries), what="queries")
        _, exact = exact_topk(self.vectors, truth, min(k, self.size), threads=self.threads)
        recall = id_recall = 0.0
        for value in self.knob_values:
            self._set_search_knob(value)
            _, rows = self._search(truth, min(k, self.size))  # raw: unfilled slots (−1) count as misses
            recall = tie_recall_at_k(self.vectors, truth, rows, exact)
            id_recall = recall_at_k(rows, exact)  # row positions stand for ids; −1 never matches
            if recall >= target_recall:
                return {"knob": self.knob, "value": value, "recall": recall, "id_recall": id_recall, "reached": True}
        return {"knob": self.knob, "value": self.knob_values[-1], "recall": recall, "id_recall": id_recall,
                "reached": False}

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
               chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact maximum inner-product top-k: a torch matmul per block of items, keeping only the
    scores above each query's running k-th best.

    The first block gives every query its top-k and so a threshold, its k-th best score; in
    every later block only the scores above the threshold (few, once a few blocks are seen)
    are merged into the top-k, and the threshold rises. That skips the per-block top-k, which
    costs more than the matmul itself, and makes batched search several times faster than
    FAISS's `IndexFlatIP` on one CPU thread. It is the reference every approximate index is
    measured against.

    Args:
        vectors: [N, D] float32; queries: [Q, D] float32.
        k: results per query (at most N).
        threads: torch threads.
        chunk: items per block (default: about 2M scores per block, at most 1M items).

    Returns:
        (scores [Q, k] float32, row positions [Q, k] int64), best first.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        items, q = torch.from_numpy(vectors), torch.from_numpy(queries)
        n, nq = len(items), len(q)
        k = min(k, n)
        chunk = chunk or min(1 << 20, max(1024, (1 << 21) // max(1, nq)))
        first = min(n, max(chunk, k))
        best_s, best_i = (q @ items[:first].T).topk(k, dim=1, sorted=False)  # [Q, k]
        threshold = best_s.amin(1, keepdim=True)  # [Q, 1] the k-th best so far
        for start in range(first, n, chunk):
            block = q @ items[start:start + chunk].T  # [Q, C]
            rows, cols = (block > threshold).nonzero(as_tuple=True)  # row-major: rows ascending
            if not len(rows):
                continue
            # the survivors of each query, left-aligned in a [Q, M] block padded with -inf
            counts = torch.bincount(rows, minlength=nq)
            slot = torch.arange(len(rows)) - (counts.cumsum(0) - counts)[rows]
            width = int(counts.max())
            new_s = torch.full((nq, width), float("-inf"))
            new_s[rows, slot] = block[rows, cols]
            new_i = torch.zeros((nq, width), dtype=torch.long)
            new_i[rows, slot] = cols + start
            best_s, pos = torch.cat([best_s, new_s], 1).topk(k, dim=1, sorted=False)
            best_i = torch.cat([best_i, new_i], 1).gather(1, pos)
            threshold = best_s.amin(1, keepdim=True)
        best_s, order = best_s.sort(1, descending=True)
        return best_s.numpy(), best_i.gather(1, order).numpy()
    finally:
        torch.set_num_threads(previous)


def tie_recall_at_k(vectors: np.ndarray, queries: np.ndarray, got: np.ndarray, exact: np.ndarray, *,
                    tol: float = 1e-6) -> float:
    """Recall@k that counts ties: the mean fraction of the k slots of a query filled by a result
    scoring at least the exact k-th score (minus `tol`), as ann-benchmarks measures it.

    Args:
        vectors: [N, D] the indexed vectors; queries: [Q, D].
        got: [Q, K'] row positions an index returned (−1 = unfilled, a miss).
        exact: [Q, K] row positions of the exact top-k, best first.

    Returns:
        A number in [0, 1]; equal to `recall_at_k` when no scores tie at the k-th place.

    Example:
        >>> v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # rows 0 and 1 tie
        >>> q = np.array([[1.0, 0.0]], dtype=np.float32)
        >>> tie_recall_at_k(v, q, np.array([[1]]), np.array([[0]])), recall_at_k(np.array([[1]]), np.array([[0]]))
        (1.0, 0.0)
    """
    def score(rows: np.ndarray) -> np.ndarray:  # the same arithmetic for both sides: ties compare equal
        return np.einsum("qd,qkd->qk", queries, vectors[np.maximum(rows, 0)])

    kth = score(exact[:, -1:])  # [Q, 1]
    hits = ((got >= 0) & (score(got) >= kth - tol)).sum(1)
    return float(np.mean(np.minimum(hits, exact.shape[1]) / exact.shape[1])) if len(exact) else 0.0


def recall_at_k(got: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of `truth` [Q, K] found in the same row of `got` [Q, K']."""
    hits = [len(np.intersect1d(g, t, assume_unique=False)) / max(1, len(t)) for g, t in zip(got, truth)]
    return float(np.mean(hits)) if hits else 0.0
