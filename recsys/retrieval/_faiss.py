"""What the FAISS-backed indexes share: thread control and the search call."""

from __future__ import annotations

import contextlib

import numpy as np


@contextlib.contextmanager
def faiss_threads(n: int):
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield faiss
    finally:
        faiss.omp_set_num_threads(previous)


def faiss_search(index, queries: np.ndarray, k: int, threads: int, params=None) -> tuple[np.ndarray, np.ndarray]:
    with faiss_threads(threads):
        scores, rows = index.search(queries, k, params=params) if params is not None else index.search(queries, k)
    return scores, rows.astype(np.int64)
