"""`ivf_flat`: inverted lists over k-means cells, exact vectors inside a cell (FAISS IndexIVFFlat).

Jégou et al., "Product quantization for nearest neighbor search", TPAMI 2011 (the IVF scheme).
`nlist` defaults to ~4·sqrt(N) cells; `nprobe` (cells visited per query) is the recall knob.
"""

from __future__ import annotations

import math

import numpy as np

from recsys.retrieval._faiss import faiss_search, faiss_threads
from recsys.retrieval.base import VectorIndex

#: nprobe values `tune` walks for every IVF index, cheapest first (fine steps where a large
#: catalogue needs them: each step is a few percent more cells scanned)
NPROBE_VALUES = (1, 2, 4, 8, 12, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256, 384, 512)


def default_nlist(n: int) -> int:
    """Cells of an IVF index over n vectors: ~4·sqrt(N), and at least 39 training points per cell."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))


def training_sample(vectors: np.ndarray, size: int) -> np.ndarray:
    """At most `size` rows of `vectors` (a seeded sample) to train the k-means quantiser on."""
    n = len(vectors)
    return vectors if n <= size else vectors[np.random.default_rng(0).choice(n, size, replace=False)]


class IVFIndex(VectorIndex):
    """What every IVF index shares: the `nprobe` knob and the search. A subclass's `_build`
    sets ``self.ivf`` (the FAISS IVF index whose nprobe is set), ``self.index`` (what is
    searched: the IVF index or a wrapper of it) and ``self.nlist``."""

    knob = "nprobe"
    knob_values = NPROBE_VALUES

    def _set_search_knob(self, value: int) -> None:
        self.params["nprobe"] = int(min(value, self.nlist))
        self.ivf.nprobe = self.params["nprobe"]

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return faiss_search(self.index, queries, k, self.threads)


class IVFFlatIndex(IVFIndex):
    name = "ivf_flat"
    defaults = {"nlist": 0, "nprobe": 8, "train_size": 100_000, "build_threads": 0}

    def _build(self, vectors: np.ndarray) -> None:
        nlist = self.params["nlist"] or default_nlist(len(vectors))
        with faiss_threads(self.params["build_threads"] or self.threads) as faiss:
            quantizer = faiss.IndexFlatIP(self.dim)
            self.index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.train(training_sample(vectors, self.params["train_size"]))
            self.index.add(vectors)
        self.ivf, self.nlist = self.index, nlist
        self._set_search_knob(self.params["nprobe"])
