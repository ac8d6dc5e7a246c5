"""Choosing an index: the fastest one that reaches a recall target against exact search.

Each candidate index type is built (timed), its search knob tuned on sample queries to the
target recall@k, and its single-query latency measured (one thread, as serving runs it). An
index whose build took longer than `max_build_s` does not qualify. The exact index always
qualifies, so a choice always exists; on a small catalogue it usually wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from recsys.retrieval.registry import INDEXES, build_index


def single_query_ms(index, queries: np.ndarray, k: int, *, repeats: int = 1, warmup: int = 3,
                    clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median and p99 time (ms, by `clock`: wall by default) of searching one query at a time."""
    for q in queries[:warmup]:
        index.search(q[None], k)
    times = []
    for _ in range(repeats):
        for q in queries:
            t = clock()
            index.search(q[None], k)
            times.append((clock() - t) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def choose_index(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, *, k: int = 500,
                 target_recall: float = 0.95, types: tuple[str, ...] = tuple(INDEXES),
                 latency_queries: int = 200, params: dict[str, dict[str, Any]] | None = None,
                 max_build_s: float | None = None, clock: Callable[[], float] = time.perf_counter,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build, tune and time every type in `types`; return the choice and the whole table.

    Args:
        vectors: [N, D] item vectors; ids: [N] item ids.
        queries: [Q, D] sample user vectors for tuning and timing.
        k: the number of candidates retrieved per request.
        target_recall: recall@k against exact search (ties counted) an index must reach.
        params: per type, index parameters (e.g. ``{"ivf_flat": {"nlist": 2048}}``).
        max_build_s: an index whose build takes longer (wall time) does not qualify (None: no limit).
        clock: what single-query times are measured by (wall time by default; e.g.
            `time.process_time` for CPU time on a shared machine).
        log: receives one line per index.

    Returns:
        ``{"type", "params", "recall", "p50_ms", ..., "table": [per type]}``; each table row
        has ``recall`` (ties counted), ``id_recall``, ``reached``, ``build_s`` (wall),
        ``build_cpu_s`` (the process's CPU time: about ``build_s`` when the build ran on one
        thread), ``p50_ms``, ``p99_ms`` and ``qualifies`` (reached and built in time).
    """
    k = min(k, len(vectors))
    table = []
    for name in types:
        start, cpu = time.perf_counter(), time.process_time()
        index = build_index(name, vectors.shape[1], **(params or {}).get(name, {})).build(vectors, ids)
        build_s, build_cpu_s = time.perf_counter() - start, time.process_time() - cpu
        tuned = index.tune(queries, k=k, target_recall=target_recall)
        timing = single_query_ms(index, queries[:latency_queries], k, clock=clock)
        in_time = max_build_s is None or build_s <= max_build_s
        row = {"type": name, "params": dict(index.params), "recall": tuned["recall"], "id_recall": tuned["id_recall"],
               "reached": tuned["reached"], "build_s": build_s, "build_cpu_s": build_cpu_s,
               "qualifies": tuned["reached"] and in_time, **timing}
        table.append(row)
        if log:
            log(f"index {name:<9} build {build_s:7.1f}s  {index.knob or 'exact'}={tuned['value']}  "
                f"recall@{k} {row['recall']:.3f} (ids {row['id_recall']:.3f})  p50 {row['p50_ms']:.3f} ms")
        del index
    best = min((r for r in table if r["qualifies"]), key=lambda r: r["p50_ms"], default=None)
    if best is None:  # nothing qualified (e.g. the exact index was not among the types)
        best = max(table, key=lambda r: (r["recall"], -r["p50_ms"]))
    return {**best, "k": k, "target_recall": target_recall, "table": table}
