"""`ivf_flat`: inverted lists over k-means cells, exact vectors inside a cell (FAISS IndexIVFFlat).

Jégou et al., "Product quantization for nearest neighbor search", TPAMI 2011 (the IVF scheme).
`nlist` defaults to ~4·sqrt(N) cells; `nprobe` (cells visited per query) is the recall knob.
"""

from __future__ import annotations

import math

import numpy as np

from recsys.retrieval._faiss import faiss_search, faiss_threads
from recsys.retrieval.base import VectorIndex


class IVFFlatIndex(VectorIndex):
    name = "ivf_flat"
    defaults = {"nlist": 0, "nprobe": 8, "train_size": 100_000, "build_threads": 0}
    knob = "nprobe"
    knob_values = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)

    def _build(self, vectors: np.ndarray) -> None:
        n = len(vectors)
        nlist = self.params["nlist"] or max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))
        with faiss_threads(self.params["build_threads"] or self.threads) as faiss:
            quantizer = faiss.IndexFlatIP(self.dim)
            self.index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            sample = vectors if n <= self.params["train_size"] else vectors[rng.choice(n, self.params["train_size"], replace=False)]
            self.index.train(sample)
            self.index.add(vectors)
        self.nlist = nlist
        self._set_search_knob(self.params["nprobe"])

    def _set_search_knob(self, value: int) -> None:
        self.params["nprobe"] = int(min(value, self.nlist))
        self.index.nprobe = self.params["nprobe"]

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return faiss_search(self.index, queries, k, self.threads)
