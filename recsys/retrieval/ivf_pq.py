"""`ivf_pq`: inverted lists + product-quantised residuals, re-ranked exactly (FAISS IndexIVFPQ
wrapped in IndexRefineFlat).

Jégou et al., TPAMI 2011. `m` sub-quantisers of `nbits` bits compress each vector to m bytes;
the top `k_factor`·k candidates by compressed distance are re-scored with the exact vectors,
which is what makes a high recall target reachable. `nprobe` is the recall knob.
"""

from __future__ import annotations

import math

import numpy as np

from recsys.retrieval._faiss import faiss_threads
from recsys.retrieval.ivf_flat import IVFIndex, default_nlist, training_sample


class IVFPQIndex(IVFIndex):
    name = "ivf_pq"
    defaults = {"nlist": 0, "m": 0, "nbits": 8, "nprobe": 8, "k_factor": 4, "train_size": 100_000, "build_threads": 0}

    def _build(self, vectors: np.ndarray) -> None:
        n = len(vectors)
        nlist = self.params["nlist"] or default_nlist(n)
        m = self.params["m"] or next(c for c in (self.dim // 4, self.dim // 2, self.dim, 1) if c and self.dim % c == 0)
        nbits = self.params["nbits"] if n >= 2 ** self.params["nbits"] * 39 else max(1, int(math.log2(max(2, n // 39))))
        with faiss_threads(self.params["build_threads"] or self.threads) as faiss:
            quantizer = faiss.IndexFlatIP(self.dim)
            ivfpq = faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
            ivfpq.train(training_sample(vectors, self.params["train_size"]))
            self.index = faiss.IndexRefineFlat(ivfpq)
            self.index.k_factor = float(self.params["k_factor"])
            self.index.add(vectors)
        self.ivf, self.nlist = ivfpq, nlist
        self._set_search_knob(self.params["nprobe"])
