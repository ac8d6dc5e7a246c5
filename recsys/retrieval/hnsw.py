"""`hnsw`: hierarchical navigable small-world graph (FAISS IndexHNSWFlat).

Malkov & Yashunin, TPAMI 2018. `M` neighbours per node, `ef_construction` at build time;
`ef_search` (the candidate list size per query) is the recall knob.
"""

from __future__ import annotations

import numpy as np

from recsys.retrieval._faiss import faiss_search, faiss_threads
from recsys.retrieval.base import VectorIndex


class HNSWIndex(VectorIndex):
    name = "hnsw"
    defaults = {"M": 32, "ef_construction": 80, "ef_search": 64, "build_threads": 0}
    knob = "ef_search"
    knob_values = (16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048)

    def _build(self, vectors: np.ndarray) -> None:
        with faiss_threads(self.params["build_threads"] or self.threads) as faiss:
            self.index = faiss.IndexHNSWFlat(self.dim, self.params["M"], faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = self.params["ef_construction"]
            self.index.add(vectors)
        self._set_search_knob(self.params["ef_search"])

    def _set_search_knob(self, value: int) -> None:
        self.params["ef_search"] = int(value)
        self.index.hnsw.efSearch = int(value)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.index.hnsw.efSearch < k:  # HNSW returns at most efSearch results
            self.index.hnsw.efSearch = k
        try:
            return faiss_search(self.index, queries, k, self.threads)
        finally:
            self.index.hnsw.efSearch = self.params["ef_search"]
