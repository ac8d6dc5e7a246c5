"""Retrieval: recall@k against exact search vs queries per second, for every index type.

For each index type (`recsys.retrieval.registry`) the index is built once (timed), then its
search knob (IVF ``nprobe``, HNSW ``efSearch``) is swept; at each setting the script measures
recall@k against exact search (ties counted, `tie_recall_at_k`) over the sample queries, and
one-query-at-a-time latency on one thread (QPS = 1 / mean latency, with p50 / p99), the way a
serving request searches. Recall is the index's own: slots it leaves unfilled count as misses
(the public `search` refills them exactly, which the latency includes). Exact search (torch matmul + top-k) is the first row.

Vectors and queries come from a trained run's retriever (``--run``, default the main job's
``runs/main``: its item vectors and the user vectors of validation rows), or from ``.npy``
files (``--vectors``, ``--queries``; e.g. the 1M-item catalogue `scripts/bench_serving.py`
saves).

Usage:
    python scripts/bench_retrieval.py                               # runs/main, k = 500
    python scripts/bench_retrieval.py --vectors V.npy --queries Q.npy --k 500 --types ivf_flat,hnsw
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import emit, machine, table  # noqa: E402

from recsys.retrieval.base import exact_topk, tie_recall_at_k  # noqa: E402
from recsys.retrieval.registry import INDEXES, build_index  # noqa: E402


def run_vectors(run: Path, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """(item vectors, user vectors of validation rows) of a main-job run directory."""
    import torch

    from recsys.train_retriever import load_retrieval_data, load_retriever

    model, vectors, _, manifest = load_retriever(run / "retriever")
    data = load_retrieval_data(manifest["dataset"], history=model.config.history)
    valid = data.splits["valid"]
    n = min(n_queries, len(valid))
    with torch.no_grad():
        queries = model.user_vectors(valid.x[:n], data.history["valid"][:n]).numpy()
    return np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(queries, dtype=np.float32)


def latency(index, queries: np.ndarray, k: int, timed: int) -> dict[str, float]:
    for q in queries[:3]:
        index.search(q[None], k)
    times = []
    for q in queries[:timed]:
        t = time.perf_counter()
        index.search(q[None], k)
        times.append(time.perf_counter() - t)
    t = np.asarray(times) * 1e3
    return {"mean_ms": float(t.mean()), "p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)),
            "qps": float(1e3 / t.mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/main", help="main-job run directory (retriever/ inside)")
    p.add_argument("--vectors", help=".npy item vectors [N, D] (instead of --run)")
    p.add_argument("--queries", help=".npy query vectors [Q, D] (with --vectors)")
    p.add_argument("--k", type=int, default=500)
    p.add_argument("--types", default=",".join(INDEXES), help="comma-separated index types")
    p.add_argument("--n-queries", type=int, default=500, help="queries for recall")
    p.add_argument("--timed", type=int, default=200, help="queries timed one at a time per setting")
    p.add_argument("--out", default="runs/bench/retrieval.json")
    p.add_argument("--json", action="store_true", help="print only the JSON")
    args = p.parse_args(argv)
    unknown = [t for t in args.types.split(",") if t not in INDEXES]
    if unknown:
        print(f"error: unknown index type(s) {unknown}; known: {', '.join(INDEXES)}", file=sys.stderr)
        return 2
    if args.vectors:
        if not args.queries:
            print("error: --vectors needs --queries", file=sys.stderr)
            return 2
        vectors = np.ascontiguousarray(np.load(args.vectors), dtype=np.float32)
        queries = np.ascontiguousarray(np.load(args.queries), dtype=np.float32)[:args.n_queries]
        source = f"{args.vectors} / {args.queries}"
    else:
        if not (Path(args.run) / "retriever" / "manifest.json").exists():
            print(f"error: no trained retriever in {args.run}/retriever; run `recsys run` first or pass --vectors",
                  file=sys.stderr)
            return 2
        vectors, queries = run_vectors(Path(args.run), args.n_queries)
        source = f"{args.run}/retriever"
    k = min(args.k, len(vectors))
    _, exact = exact_topk(vectors, queries, k, threads=1)
    rows = []
    for name in args.types.split(","):
        t0 = time.perf_counter()
        index = build_index(name, vectors.shape[1], threads=1).build(vectors)
        build_s = time.perf_counter() - t0
        settings = [None] if index.knob is None else list(index.knob_values)
        for value in settings:
            if value is not None:
                index._set_search_knob(value)  # the knob `tune` walks
            _, rows_got = index._search(queries, k)  # raw: slots the index leaves unfilled (−1) are misses
            recall = tie_recall_at_k(vectors, queries, rows_got, exact)
            row = {"type": name, "knob": index.knob, "value": value, "recall": recall, "build_s": build_s,
                   **latency(index, queries, k, args.timed)}
            rows.append(row)
            if recall >= 0.999 and value is not None:
                break  # further settings only cost time
        del index
    report = {"benchmark": "retrieval", "source": source, "items": len(vectors), "dim": int(vectors.shape[1]),
              "queries": len(queries), "k": k, "threads": 1, "results": rows, "machine": machine()}
    text = table([(r["type"], f"{r['knob']}={r['value']}" if r["knob"] else "exact", f"{r['recall']:.4f}",
                   f"{r['qps']:,.0f}", f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['build_s']:.1f}")
                  for r in rows], ("index", "setting", f"recall@{k}", "QPS (1 thread)", "p50 ms", "p99 ms", "build s"))
    emit(report, f"retrieval on {source}: {len(vectors):,} items x {vectors.shape[1]}, {len(queries)} queries\n" + text,
         args.out, json_only=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
