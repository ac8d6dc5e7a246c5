"""Choosing an index: the fastest one that reaches a recall target against exact search.

Each candidate index type is built, its search knob tuned on sample queries to the target
recall@k, and its single-query latency measured (one thread, as serving runs it). The exact
index always qualifies, so a choice always exists; on a small catalogue it usually wins.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from recsys.retrieval.registry import INDEXES, build_index


def single_query_ms(index, queries: np.ndarray, k: int, *, repeats: int = 1) -> dict[str, float]:
    """Median and p99 wall time (ms) of searching one query at a time."""
    times = []
    for _ in range(repeats):
        for q in queries:
            t = time.perf_counter()
            index.search(q[None], k)
            times.append((time.perf_counter() - t) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def choose_index(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, *, k: int = 500,
                 target_recall: float = 0.95, types: tuple[str, ...] = tuple(INDEXES),
                 latency_queries: int = 200, params: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Build, tune and time every type in `types`; return the choice and the whole table.

    Args:
        vectors: [N, D] item vectors; ids: [N] item ids.
        queries: [Q, D] sample user vectors for tuning and timing.
        k: the number of candidates retrieved per request.
        target_recall: recall@k against exact search an index must reach.

    Returns:
        ``{"type", "params", "recall", "p50_ms", ..., "table": [per type]}``.
    """
    k = min(k, len(vectors))
    table = []
    for name in types:
        start = time.perf_counter()
        index = build_index(name, vectors.shape[1], **(params or {}).get(name, {})).build(vectors, ids)
        build_s = time.perf_counter() - start
        tuned = index.tune(queries, k=k, target_recall=target_recall)
        timing = single_query_ms(index, queries[:latency_queries], k)
        table.append({"type": name, "params": {kk: v for kk, v in index.params.items()}, "recall": tuned["recall"],
                      "reached": tuned["reached"], "build_s": build_s, **timing})
    ok = [row for row in table if row["reached"]]
    best = min(ok, key=lambda r: r["p50_ms"])
    return {**best, "k": k, "target_recall": target_recall, "table": table}
