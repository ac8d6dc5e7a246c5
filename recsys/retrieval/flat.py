"""`flat`: exact maximum inner-product search (a torch matmul + top-k; see `exact_topk`)."""

from __future__ import annotations

import numpy as np

from recsys.retrieval.base import VectorIndex, exact_topk


class FlatIndex(VectorIndex):
    """Exact search: the reference, and the right choice up to a few hundred thousand items.

    Example:
        >>> import numpy as np
        >>> index = FlatIndex(4).build(np.eye(4, dtype="float32"), np.array([10, 11, 12, 13]))
        >>> index.search(np.array([[0.5, 0, 1, 0]], dtype="float32"), k=2)[1]
        array([[12, 10]])
    """

    name = "flat"

    def _build(self, vectors: np.ndarray) -> None:
        pass

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_topk(self.vectors, queries, k, threads=self.threads)
