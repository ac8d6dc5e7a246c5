"""Serving speed at catalogue scale (issue #5): the index bars and the request bar.

Every figure is a ratio to a floor measured in the same run, on one thread per request
(``torch.set_num_threads(1)``, ``faiss.omp_set_num_threads(1)``), and every time is a median
(or a p99) over many repetitions, so the verdicts hold on a shared machine. Times are process
CPU time (``time.process_time``) unless named wall.

Method:

1. **World.** The project's simulator (`recsys.data.sources.synthetic`) with ``--items`` videos
   (1M), prepared like `recsys data synth` (`recsys.data.prepare.prepare_synthetic`). Items
   never shown in the training rows are out of the training vocabulary: the models cannot tell
   them apart beyond their features, so their vectors coincide (the summary counts them).
2. **Models.** The two-tower retriever (`recsys.train_retriever`, 64-dim vectors) for
   ``--retriever-epochs`` (capped at ``--retriever-seconds``), and the main job's ranker (MMoE +
   uncertainty weighting + ESMM, `recsys.pipeline.MAIN_RANKER`) through `recsys.train.train` for
   ``--ranker-steps`` steps; both on one thread, so the models do not depend on the machine's load.
   Together with the chosen ``index.json`` they form a main-job run directory.
3. **Index bars**, on the retriever's item vectors [N, 64]; queries are the user-tower vectors
   of real validation rows (user, query item, click history):
   - exact single-query scan: `FlatIndex` (torch matmul + top-k, `recsys.retrieval.base.exact_topk`)
     and FAISS `IndexFlatIP`, k = 500; the faster of the two is the reference;
   - exact batched throughput (``--batch`` queries per call): torch vs `IndexFlatIP`; bar ≥ 1.5×;
   - every index type (`recsys.retrieval.select.choose_index`): build time (one thread; bar
     ≤ 120 s), search knob tuned to recall@500 ≥ 0.95 against exact search (ties counted,
     `tie_recall_at_k`; the plain id recall is shown beside it), single-query p50; the chosen
     index must reach the recall at a p50 ≤ 1/25 of the exact scan.
4. **Request bar.** `recsys.serving.Recommender` over the run directory (the real
   `recommend` path: user vector, index search for 500 + seen, drop seen, rank 500 with
   `Ranker.score_candidates`, blend, top-10), for ``--requests`` requests of warm users:
   per-request CPU-time median and wall p99. Floors, measured in the same run: the index's
   single-query CPU time (p50, k = 500, the same users' vectors) + the ranker's FLOPs for 500
   candidates (counted per layer: 2·in·out per row of every matmul; the request part once)
   divided by the single-thread float32 matmul rate: the faster of ``torch.mm`` and oneDNN
   (`_bench.mm_rates`, 1024³, best of 3 per round). On x86 ``torch.mm`` runs MKL, which runs its
   AVX2 kernels on AMD CPUs; oneDNN multiplies about twice as fast there, and the recommender
   ranks through it (`Ranker.pack_cpu`). The same requests on the plain (``torch.mm``) path are
   timed too, against a floor at ``torch.mm``'s rate (what runs before this one measured).
   Bars: CPU median ≤ 1.3 × floor, wall p99 ≤ 3 × floor.
5. **Bound.** The matrix products one request's ranking dispatches (`record_products`: every
   oneDNN linear and aten matmul, their FLOPs checked against the count above) are replayed on
   their recorded inputs with nothing else: alone, per group (their fraction of the matmul
   rate), and after each request's index search and candidate gather (the bare request): what
   a request of this ranker costs on these kernels when every other step is free.

Usage:
    python scripts/bench_serving.py                     # 1M items: data, training, all bars
    python scripts/bench_serving.py --quick             # a small smoke run (about a minute)
    python scripts/bench_serving.py --reuse             # keep the data and models in --work
    python scripts/bench_serving.py --reuse --profile 200   # + cProfile of 200 requests

Prints a table and one JSON object (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import faiss  # noqa: E402
import torch  # noqa: E402

from _bench import loadavg, mm_rates  # noqa: E402
from recsys.io import atomic_write_json  # noqa: E402

K = 500  # candidates retrieved per request
CPU = time.process_time
BARS = {"recall": 0.95, "index_speedup": 25.0, "batched_vs_faiss": 1.5, "build_s": 120.0,
        "request_cpu_ratio": 1.3, "request_p99_ratio": 3.0}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def one_thread() -> None:
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


# ----------------------------------------------------------------------------------- world and models


def sim_config(args):
    from recsys.data.sources.synthetic import SimConfig

    return SimConfig(users=args.users, items=args.items, impressions=args.impressions, seed=args.seed,
                     popularity_exponent=args.popularity_exponent)


def build_world(args, prepared: Path) -> dict[str, Any]:
    """Simulate and prepare, unless --reuse finds the same world already prepared."""
    from recsys.data.prepare import prepare_synthetic
    from recsys.data.sources.synthetic import simulate

    config = sim_config(args)
    summary_path = prepared / "summary.json"
    if args.reuse and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("protocol", {}).get("simulator") == asdict(config):
            log(f"world: reusing {prepared}")
            return summary
    start = time.perf_counter()
    log(f"world: simulating {config.impressions:,} impressions, {config.users:,} users, {config.items:,} items")
    summary = prepare_synthetic(simulate(config), prepared)
    log(f"world: prepared in {time.perf_counter() - start:.0f}s")
    return summary


def reuse_or_train(reuse: bool, directory: Path, train: Callable[[Path], Any]) -> dict[str, Any]:
    """The manifest of the model published in `directory`: reused when `reuse` finds one there,
    else trained afresh by ``train(directory)`` into an emptied directory."""
    if reuse and (directory / "manifest.json").exists():
        log(f"{directory.name}: reusing {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)
        train(directory)
    return json.loads((directory / "manifest.json").read_text())


def train_models(args, prepared: Path, run: Path) -> dict[str, Any]:
    """The retriever (time-bounded) and the main job's ranker (step-bounded), unless reused."""
    from recsys.config import load_config
    from recsys.pipeline import MAIN_RANKER
    from recsys.train import train
    from recsys.train_retriever import RetrieverConfig, train_retriever

    torch.set_num_threads(args.train_threads)
    out: dict[str, Any] = {}

    def train_ranker(directory: Path) -> None:
        config = load_config("default", {
            "model": MAIN_RANKER["model"], "weighting": MAIN_RANKER["weighting"], "esmm": MAIN_RANKER["esmm"],
            "dataset": str(prepared), "epochs": 1, "max_steps": args.ranker_steps, "device": "cpu",
            "threads": args.train_threads, "diagnostics_every": 0, "checkpoint_every": 1_000_000, "seed": args.seed})
        start = time.perf_counter()
        result = train(config, directory, log=log)
        log(f"ranker: {result.steps} steps in {time.perf_counter() - start:.0f}s, valid {result.valid}")

    retriever_config = RetrieverConfig(epochs=args.retriever_epochs, max_seconds=args.retriever_seconds,
                                       eval_rows=args.eval_rows, seed=args.seed, model_options={"out_dim": args.dim})
    out["retriever"] = reuse_or_train(args.reuse, run / "retriever",
                                      lambda d: train_retriever(prepared, d, retriever_config, log=log))
    out["ranker"] = reuse_or_train(args.reuse, run / "ranker", train_ranker)
    return {"retriever": {k: out["retriever"].get(k) for k in ("test_recall", "seconds", "history", "model",
                                                                "stopped_at_time_limit")},
            "ranker": {k: out["ranker"].get(k) for k in ("model", "tasks", "esmm", "steps", "best_valid")}}


# ----------------------------------------------------------------------------------- timing helpers


def median_cpu(fn, repeats: int) -> float:
    """Median CPU seconds of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        t = CPU()
        fn()
        times.append(CPU() - t)
    return float(np.median(times))


# ----------------------------------------------------------------------------------- index bars


def user_queries(run: Path, n: int, seed: int) -> np.ndarray:
    """User-tower vectors [n, D] of random validation rows (real users, query items, histories)."""
    from recsys.train_retriever import load_retrieval_data, load_retriever

    model, _, _, manifest = load_retriever(run / "retriever")
    data = load_retrieval_data(manifest["dataset"], history=model.config.history)
    valid, hist = data.splits["valid"], data.history["valid"]
    rows = torch.from_numpy(np.random.default_rng(seed).choice(len(valid), min(n, len(valid)), replace=False))
    with torch.no_grad():
        return model.user_vectors(valid.x[rows], hist[rows]).numpy()


def index_bars(args, run: Path) -> dict[str, Any]:
    from recsys.data.fields import OOV
    from recsys.retrieval.base import exact_topk, tie_recall_at_k
    from recsys.retrieval.flat import FlatIndex
    from recsys.retrieval.select import choose_index, single_query_ms
    from recsys.train_retriever import load_retriever

    one_thread()
    _, vectors, ids, manifest = load_retriever(run / "retriever")
    queries = user_queries(run, max(args.queries, args.batch), args.seed)
    tune_q = queries[: args.queries]
    import polars as pl

    items = pl.read_parquet(Path(manifest["dataset"]) / "items.parquet", columns=["f_item_id"])
    stats = {"items": int(len(vectors)), "dim": int(vectors.shape[1]), "queries": int(len(tune_q)),
             "distinct_vectors": int(len(np.unique(vectors, axis=0))),
             "items_out_of_vocabulary": int((items["f_item_id"] == OOV).sum())}
    log(f"index: {stats}")

    # exact single query: our flat index (torch) and FAISS IndexFlatIP
    flat = FlatIndex(vectors.shape[1]).build(vectors, ids)
    faiss_flat = faiss.IndexFlatIP(vectors.shape[1])
    faiss_flat.add(vectors)
    single_q = queries[: args.exact_queries]
    exact_torch = single_query_ms(flat, single_q, K, clock=CPU)
    exact_faiss = single_query_ms(faiss_flat, single_q, K, clock=CPU)
    exact_ms = min(exact_torch["p50_ms"], exact_faiss["p50_ms"])
    log(f"exact single query p50: torch {exact_torch['p50_ms']:.2f} ms, faiss IndexFlatIP {exact_faiss['p50_ms']:.2f} ms")

    # exact batched throughput
    batch = queries[: args.batch]
    t_torch = median_cpu(lambda: exact_topk(vectors, batch, K, threads=1), args.batch_repeats)
    t_faiss = median_cpu(lambda: faiss_flat.search(batch, K), args.batch_repeats)
    _, rows_torch = exact_topk(vectors, batch, K)
    _, rows_faiss = faiss_flat.search(batch, K)
    agree = tie_recall_at_k(vectors, batch, rows_torch, rows_faiss)
    batched = {"batch": int(len(batch)), "torch_qps": len(batch) / t_torch, "faiss_qps": len(batch) / t_faiss,
               "speedup": t_faiss / t_torch, "torch_vs_faiss_recall": agree}
    log(f"exact batched ({len(batch)} queries): torch {batched['torch_qps']:.0f} q/s, faiss {batched['faiss_qps']:.0f} "
        f"q/s ({batched['speedup']:.2f}x), agreement {agree:.4f}")
    del flat, faiss_flat

    # every index type: build, tune, time
    ivf = {"nlist": args.nlist, "train_size": args.train_size}
    params = {"ivf_flat": ivf, "ivf_sq": ivf, "ivf_pq": ivf,
              "hnsw": {"M": args.hnsw_m, "ef_construction": args.hnsw_ef_construction}}
    types = tuple(t for t in args.types.split(",") if t)
    choice = choose_index(vectors, ids, tune_q, k=K, target_recall=BARS["recall"], types=types, params=params,
                          latency_queries=args.latency_queries, max_build_s=BARS["build_s"], clock=CPU, log=log)
    table = choice["table"]
    for row in table:
        row["speedup_vs_exact"] = exact_ms / row["p50_ms"]
    chosen = next(r for r in table if r["type"] == choice["type"])
    atomic_write_json(run / "index.json", {"type": chosen["type"], "params": chosen["params"], "recall": chosen["recall"],
                                           "k": K, "target_recall": BARS["recall"], "table": table})
    return {"stats": stats, "exact_single": {"torch": exact_torch, "faiss": exact_faiss, "reference_ms": exact_ms},
            "exact_batched": batched, "indexes": table, "chosen": chosen["type"]}


# ----------------------------------------------------------------------------------- request bar


def ranker_flops(model, n: int) -> dict[str, Any]:
    """FLOPs of `score_candidates` for one request and n candidates, per layer (2·in·out per
    row of every matmul), the request part counted once; checked against torch's counter."""
    from torch.utils.flop_counter import FlopCounterMode

    from recsys.models.mmoe import MMoE

    layers: list[dict[str, Any]] = []

    def add(name: str, once: float, per_candidate: float) -> None:
        layers.append({"layer": name, "once": once, "per_candidate": per_candidate})

    if isinstance(model, MMoE):
        c, t = model.config, len(model.tasks)
        width, cand = model.in_dim, len(model.embedding.field_order(("item",))) * model.embedding.dim
        e, hidden = c.num_experts, c.expert_hidden
        add(f"experts layer 1: request part [1, {width}] @ [{width}, {hidden[0]}] x {e}", 2 * width * hidden[0] * e, 0)
        add(f"experts layer 1: candidate part [{cand}] @ [{cand}, {hidden[0]}] x {e}", 0, 2 * cand * hidden[0] * e)
        add(f"gates: request part [1, {width}] @ [{width}, {t * e}]", 2 * width * t * e, 0)
        add(f"gates: candidate part [{cand}] @ [{cand}, {t * e}]", 0, 2 * cand * t * e)
        for a, b in zip(hidden[:-1], hidden[1:]):
            add(f"experts [{a}] @ [{a}, {b}] x {e}", 0, 2 * a * b * e)
        add(f"mixture: {t} tasks x {e} experts x {hidden[-1]}", 0, 2 * t * e * hidden[-1])
        widths = [hidden[-1], *c.tower_hidden, 1]
        for a, b in zip(widths[:-1], widths[1:]):
            add(f"towers [{a}] @ [{a}, {b}] x {t}", 0, 2 * a * b * t)
    once = sum(r["once"] for r in layers)
    per = sum(r["per_candidate"] for r in layers)
    schema = model.schema
    request_x = torch.zeros(schema.width, dtype=torch.long)
    candidate_x = torch.full((n, schema.width), 0, dtype=torch.long)
    counted = {}
    packed = any(getattr(m, "_packs", None) is not None for m in model.modules())
    model.pack_cpu(False)  # torch's counter sees aten matmuls only, not oneDNN's
    for b in (1, 2, n):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.score_candidates(request_x, candidate_x[:b])
        counted[b] = counter.get_total_flops()
    counter_per = counted[2] - counted[1]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(candidate_x)
    model.pack_cpu(packed)
    return {"layers": layers, "once": once, "per_candidate": per, "total": once + per * n if layers else counted[n],
            "counter_total": counted[n], "counter_once": counted[1] - counter_per, "counter_per_candidate": counter_per,
            "tiled_forward_total": counter.get_total_flops(), "candidates": n}


#: The matrix products a ranker's forward dispatches (oneDNN's packed linear and aten's matmuls).
#: Under inference mode ``linear`` and ``matmul`` arrive whole, not as the mm / addmm they run.
PRODUCTS = ("mkldnn._linear_pointwise.default", "aten.linear.default", "aten.matmul.default", "aten.mm.default",
            "aten.addmm.default", "aten.bmm.default", "aten.baddbmm.default")


def product_flops(name: str, args: tuple) -> int:
    """2·M·K·N (times the batch) of one recorded product call (`name` one of `PRODUCTS`)."""
    if name.startswith("mkldnn"):  # x [M, K], packed weight [N, K]
        (m, k), n = args[0].shape, args[1].shape[0]
        return 2 * m * k * n
    if name == "aten.linear.default":  # x [..., K], weight [N, K]
        return 2 * args[0].numel() * args[1].shape[0]
    if name == "aten.matmul.default":  # any broadcast: 2·K per output element
        out = torch.matmul(torch.empty(args[0].shape, device="meta"), torch.empty(args[1].shape, device="meta"))
        return 2 * args[0].shape[-1] * out.numel()
    a, b = (args[0], args[1]) if name in ("aten.mm.default", "aten.bmm.default") else (args[1], args[2])
    return 2 * a.numel() * b.shape[-1]


def record_products(fn: Callable[[], Any]) -> list[tuple[Any, tuple, dict]]:
    """The matrix products `fn` dispatches, in order, with their inputs: (op, args, kwargs)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[Any, tuple, dict]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if str(func) in PRODUCTS:
                self.calls.append((func, args, kwargs or {}))
            return func(*args, **(kwargs or {}))

    with Recorder() as recorder:
        fn()
    return recorder.calls


def replay(calls: list[tuple[Any, tuple, dict]]) -> None:
    """Run recorded products again, back to back, on their recorded inputs (nothing else)."""
    for func, args, kwargs in calls:
        func(*args, **kwargs)


def products_table(calls: list[tuple[Any, tuple, dict]], rate_gflops: float, repeats: int = 300) -> list[dict[str, Any]]:
    """The recorded products grouped by op and shape: calls, MFLOP, hot CPU ms of the group
    replayed alone (median of `repeats`), and that time's fraction of the matmul rate."""
    groups: dict[tuple, list] = {}
    for call in calls:
        func, args, _ = call
        key = (str(func).split(".")[1], tuple(tuple(a.shape) for a in args[:3] if isinstance(a, torch.Tensor)))
        groups.setdefault(key, []).append(call)
    rows = []
    for (op, shapes), group in groups.items():
        flops = sum(product_flops(str(f), a) for f, a, _ in group)
        ms = median_cpu(lambda g=group: replay(g), repeats) * 1e3
        rows.append({"op": op, "shapes": [list(s) for s in shapes], "calls": len(group), "mflop": flops / 1e6,
                     "cpu_ms": ms, "of_rate": flops / (rate_gflops * 1e9) / (ms / 1e3) if ms > 0 else float("nan")})
    return rows


def request_bar(args, run: Path) -> dict[str, Any]:
    from recsys.serving import Recommender

    one_thread()
    start = time.perf_counter()
    rec = Recommender(run, n_candidates=K, threads=1)
    load_s = time.perf_counter() - start
    log(f"recommender: loaded {len(rec.item_ids):,} items and a {rec.index.name} index in {load_s:.0f}s")
    rng = np.random.default_rng(args.seed)
    users = [int(u) for u in rng.choice(np.array(sorted(rec.user_x)), args.requests)]
    for u in users[:20]:  # warm-up
        rec.recommend(user_id=u, k=10)

    # rounds of: requests, the index alone on the same users' vectors, the matmul rate; so a
    # change of the machine's load moves the requests and their floors together
    uvecs = np.stack([rec.user_vector(u) for u in users])
    flops = ranker_flops(rec.ranker, min(K, len(rec.item_ids)))
    # the ranker's matrix products of one request, as serving dispatches them: replayed with
    # nothing else, they bound what any request of this ranker on these kernels can cost
    with torch.inference_mode():
        first = rec.recommend(user_id=users[0], k=10)
        cand_rows = torch.from_numpy(np.searchsorted(rec.item_ids, [i for i, _ in first.candidates]))
        products = record_products(lambda: rec.ranker.score_candidates(rec.request_row(users[0]),
                                                                       candidates=rec.item_h[cand_rows]))
    product_total = sum(product_flops(str(f), a) for f, a, _ in products)
    cpu, plain_cpu, wall, parts, index_ms, rates, rounds = [], [], [], [], [], [], []
    bare_cpu, products_cpu = [], []
    for block in np.array_split(np.arange(len(users)), args.rounds):
        r_cpu, r_plain, r_index = [], [], []
        for i in block:
            c, w = CPU(), time.perf_counter()
            res = rec.recommend(user_id=users[i], k=10)
            wall.append(time.perf_counter() - w)
            r_cpu.append(CPU() - c)
            parts.append(res.timings_ms)
        rec.ranker.pack_cpu(False)  # the same requests on torch's plain path
        for i in block:
            c = CPU()
            rec.recommend(user_id=users[i], k=10)
            r_plain.append(CPU() - c)
        rec.ranker.pack_cpu(rec.onednn)
        rec.recommend(user_id=users[block[0]], k=10)  # builds the packs again: not a request's cost
        for i in block:
            c = CPU()
            rec.index.search(uvecs[i][None], K)
            r_index.append((CPU() - c) * 1e3)
        with torch.inference_mode():  # the bare sequence: search, gather, the products; nothing else
            for i in block:
                c = CPU()
                _, found = rec.index.search(uvecs[i][None], K)
                rec.item_h.index_select(0, torch.from_numpy(found[0]))
                replay(products)
                bare_cpu.append(CPU() - c)
            for _ in range(len(block) // 4):
                c = CPU()
                replay(products)
                products_cpu.append(CPU() - c)
        rate = mm_rates(repeats=3, clock=CPU)
        cpu += r_cpu
        plain_cpu += r_plain
        index_ms += r_index
        rates.append(rate)
        r_floor = float(np.median(r_index)) + flops["total"] / (rate["best"] * 1e9) * 1e3
        rounds.append({"cpu_ms_p50": 1e3 * float(np.median(r_cpu)), "index_ms": float(np.median(r_index)),
                       "matmul_gflops": rate, "floor_ms": r_floor, "cpu_ratio": 1e3 * float(np.median(r_cpu)) / r_floor})
    ranked = len(res.candidates)
    gflops = {"median": float(np.median([r["best"] for r in rates])), "backend": rates[-1]["best_backend"],
              "torch": float(np.median([r["torch"] for r in rates])), "rounds": rates}
    index_floor = float(np.median(index_ms))
    ranker_floor = flops["total"] / (gflops["median"] * 1e9) * 1e3
    floor = index_floor + ranker_floor
    torch_floor = index_floor + flops["total"] / (gflops["torch"] * 1e9) * 1e3

    # the ranking step alone, as serving calls it (the candidates' cached rows) and as a
    # forward on the tiled rows; the same 500 candidates each call (warm caches)
    row = rec.request_row(users[0])
    rows = torch.from_numpy(rng.choice(len(rec.item_ids), ranked, replace=False))
    tiled = rec.tile(row, rec.item_x[rows])
    with torch.no_grad():
        rank_split = median_cpu(lambda: rec.ranker.score_candidates(row, candidates=rec.item_h[rows]), 50) * 1e3
        rank_tiled = median_cpu(lambda: rec.ranker(tiled), 50) * 1e3

    with torch.inference_mode():
        table = products_table(products, gflops["median"])
    bare_ms, products_ms = 1e3 * float(np.median(bare_cpu)), 1e3 * float(np.median(products_cpu))
    bound = {"products": table, "product_calls": len(products), "product_flops": product_total,
             "products_cpu_ms": products_ms, "products_ratio": products_ms / ranker_floor,
             "bare_request_cpu_ms": bare_ms, "bare_ratio": bare_ms / floor}

    out = {
        "requests": len(users), "candidates_ranked": ranked, "load_s": load_s, "index": rec.index.name,
        "cpu_ms": {"p50": 1e3 * float(np.median(cpu)), "p90": 1e3 * float(np.percentile(cpu, 90)),
                   "p99": 1e3 * float(np.percentile(cpu, 99))},
        "wall_ms": {"p50": 1e3 * float(np.median(wall)), "p99": 1e3 * float(np.percentile(wall, 99))},
        "parts_wall_ms_p50": {k: float(np.median([p[k] for p in parts])) for k in parts[0]},
        "floor": {"index_ms": index_floor, "index_ms_p99": float(np.percentile(index_ms, 99)),
                  "ranker_flops": flops["total"], "matmul_gflops": gflops, "ranker_ms": ranker_floor, "total_ms": floor},
        "ranked_through": "onednn" if rec.onednn else "torch",
        "plain_path": {"cpu_ms_p50": 1e3 * float(np.median(plain_cpu)), "torch_floor_ms": torch_floor,
                       "cpu_ratio_to_torch_floor": 1e3 * float(np.median(plain_cpu)) / torch_floor},
        "flops": flops, "rounds": rounds,
        "rank_step_cpu_ms": {"score_candidates": rank_split, "tiled_forward": rank_tiled,
                             "ranker_floor": ranker_floor},
        "bound": bound,
    }
    out["cpu_ratio"] = out["cpu_ms"]["p50"] / floor
    out["p99_ratio"] = out["wall_ms"]["p99"] / floor
    if args.profile:
        out["profile"] = profile_requests(rec, users[: args.profile])
    return out


def profile_requests(rec, users: list[int]) -> str:
    """cProfile (Python functions) and torch.profiler (operators, with shapes) of `users` requests."""
    from torch.profiler import ProfilerActivity, profile

    profiler = cProfile.Profile()
    profiler.enable()
    for u in users:
        rec.recommend(user_id=u, k=10)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for u in users:
            rec.recommend(user_id=u, k=10)
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events) / len(users)
    text.write(f"torch operators: {total:.0f} us self CPU per request (profiler on), "
               f"{sum(e.count for e in events) / len(users):.0f} calls; the top 20 (us per request, calls):\n")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:20]:
        text.write(f"  {e.self_cpu_time_total / len(users):8.1f} {e.count / len(users):5.1f}  {e.key:<22} "
                   f"{str(e.input_shapes)[:80]}\n")
    return text.getvalue()


# ----------------------------------------------------------------------------------- report


def verdicts(index: dict[str, Any] | None, request: dict[str, Any] | None) -> list[dict[str, Any]]:
    bars = []

    def bar(name: str, value: float, limit: float, passed: bool, detail: str) -> None:
        bars.append({"bar": name, "value": value, "limit": limit, "pass": bool(passed), "detail": detail})

    if index:
        chosen = next(r for r in index["indexes"] if r["type"] == index["chosen"])
        ref = index["exact_single"]["reference_ms"]
        bar("chosen index recall@500 vs exact", chosen["recall"], BARS["recall"], chosen["recall"] >= BARS["recall"],
            f"{chosen['type']} {chosen['params']}; id recall {chosen['id_recall']:.3f}")
        bar("exact scan / chosen index single-query p50", chosen["speedup_vs_exact"], BARS["index_speedup"],
            chosen["speedup_vs_exact"] >= BARS["index_speedup"],
            f"{ref:.2f} ms / {chosen['p50_ms']:.3f} ms (CPU)")
        bar("chosen index build seconds (1 thread)", chosen["build_s"], BARS["build_s"],
            chosen["build_s"] <= BARS["build_s"], f"{chosen['type']} at {index['stats']['items']:,} items")
        b = index["exact_batched"]
        bar("exact batched: torch / faiss IndexFlatIP throughput", b["speedup"], BARS["batched_vs_faiss"],
            b["speedup"] >= BARS["batched_vs_faiss"],
            f"{b['torch_qps']:.0f} vs {b['faiss_qps']:.0f} queries/s, batch {b['batch']}")
    if request:
        f = request["floor"]
        bar("request CPU p50 / floor", request["cpu_ratio"], BARS["request_cpu_ratio"],
            request["cpu_ratio"] <= BARS["request_cpu_ratio"],
            f"{request['cpu_ms']['p50']:.2f} ms / ({f['index_ms']:.2f} + {f['ranker_ms']:.2f}) ms")
        bar("request wall p99 / floor", request["p99_ratio"], BARS["request_p99_ratio"],
            request["p99_ratio"] <= BARS["request_p99_ratio"],
            f"{request['wall_ms']['p99']:.2f} ms / {f['total_ms']:.2f} ms")
    return bars


def format_report(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [f"bench_serving: {s['items']:,} items, {s['users']:,} users, {s['impressions']:,} impressions; "
             f"1 thread per request; CPU times unless wall; load average {report['environment']['load_average']}"]
    index = report.get("index")
    if index:
        st = index["stats"]
        lines += ["", f"item vectors {st['items']:,} x {st['dim']}: {st['distinct_vectors']:,} distinct "
                      f"({st['items_out_of_vocabulary']:,} items outside the training vocabulary)"]
        e = index["exact_single"]
        lines.append(f"exact single query p50: torch {e['torch']['p50_ms']:.2f} ms, faiss IndexFlatIP "
                     f"{e['faiss']['p50_ms']:.2f} ms (reference {e['reference_ms']:.2f} ms)")
        b = index["exact_batched"]
        lines.append(f"exact batched, {b['batch']} queries: torch {b['torch_qps']:.0f} q/s, faiss {b['faiss_qps']:.0f} "
                     f"q/s, {b['speedup']:.2f}x (results agree: recall {b['torch_vs_faiss_recall']:.4f})")
        lines += ["", f"{'index':<10}{'build s':>9}{'cpu s':>7}{'knob':>16}{'recall':>8}{'id rec':>8}{'p50 ms':>9}"
                      f"{'p99 ms':>9}{'x exact':>9}  qualifies"]
        knobs = {"ivf_flat": "nprobe", "ivf_sq": "nprobe", "ivf_pq": "nprobe", "hnsw": "ef_search"}
        for r in index["indexes"]:
            knob = f"{knobs[r['type']]}={r['params'][knobs[r['type']]]}" if r["type"] in knobs else "-"
            if r["type"] == "hnsw":  # HNSW searches with at least ef_search = k
                knob = f"ef_search={max(K, r['params']['ef_search'])}"
            lines.append(f"{r['type']:<10}{r['build_s']:>9.1f}{r['build_cpu_s']:>7.1f}{knob:>16}{r['recall']:>8.3f}"
                         f"{r['id_recall']:>8.3f}"
                         f"{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['speedup_vs_exact']:>9.1f}  "
                         f"{'yes' if r['qualifies'] else 'no'}{'  <- chosen' if r['type'] == index['chosen'] else ''}")
    req = report.get("request")
    if req:
        f = req["floor"]
        lines += ["", f"requests: {req['requests']} warm users, {req['candidates_ranked']} candidates ranked, "
                      f"index {req['index']}",
                  f"  CPU ms p50 {req['cpu_ms']['p50']:.3f}  p90 {req['cpu_ms']['p90']:.3f}  p99 {req['cpu_ms']['p99']:.3f};"
                  f"  wall ms p50 {req['wall_ms']['p50']:.3f}  p99 {req['wall_ms']['p99']:.3f}",
                  "  parts (wall ms p50): " + ", ".join(f"{k} {v:.3f}" for k, v in req["parts_wall_ms_p50"].items()),
                  f"  floor: index {f['index_ms']:.3f} ms + ranker {f['ranker_flops'] / 1e6:.1f} MFLOP / "
                  f"{f['matmul_gflops']['median']:.1f} GFLOP/s ({f['matmul_gflops']['backend']}) = "
                  f"{f['ranker_ms']:.3f} ms -> {f['total_ms']:.3f} ms; ranked through {req['ranked_through']}",
                  f"  plain path (torch.mm, {f['matmul_gflops']['torch']:.1f} GFLOP/s): CPU p50 "
                  f"{req['plain_path']['cpu_ms_p50']:.3f} ms = {req['plain_path']['cpu_ratio_to_torch_floor']:.2f} x its "
                  f"floor {req['plain_path']['torch_floor_ms']:.3f} ms",
                  "  per round: CPU p50 / floor " + ", ".join(
                      f"{r['cpu_ms_p50']:.2f}/{r['floor_ms']:.2f} = {r['cpu_ratio']:.2f}" for r in req["rounds"]),
                  f"  ranker FLOPs: once {req['flops']['once'] / 1e6:.3f} M + {req['flops']['per_candidate'] / 1e3:.1f} k per "
                  f"candidate (torch counter: {req['flops']['counter_once'] / 1e6:.3f} M + "
                  f"{req['flops']['counter_per_candidate'] / 1e3:.1f} k); forward on tiled rows "
                  f"{req['flops']['tiled_forward_total'] / 1e6:.1f} MFLOP",
                  f"  ranking 500 alone (CPU ms): score_candidates {req['rank_step_cpu_ms']['score_candidates']:.3f}, "
                  f"forward on tiled rows {req['rank_step_cpu_ms']['tiled_forward']:.3f}, its floor "
                  f"{req['rank_step_cpu_ms']['ranker_floor']:.3f}"]
        for layer in req["flops"]["layers"]:
            lines.append(f"    {layer['layer']:<58} once {layer['once']:>10,.0f}  per candidate {layer['per_candidate']:>9,.0f}")
        bound = req.get("bound")
        if bound:
            complete = "all" if bound["product_flops"] == req["flops"]["total"] else "NOT all"
            lines += [f"  the ranker's {bound['product_calls']} matrix products of one request "
                      f"({bound['product_flops'] / 1e6:.1f} MFLOP: {complete} of its counted FLOPs), replayed alone: "
                      f"CPU {bound['products_cpu_ms']:.3f} ms = {bound['products_ratio']:.2f} x the ranker's floor; "
                      "each group replayed alone:"]
            for r in bound["products"]:
                shapes = " @ ".join("x".join(map(str, sh)) for sh in r["shapes"])
                lines.append(f"    {r['op']:<18} {shapes:<40} x{r['calls']:<3} {r['mflop']:>7.1f} MFLOP "
                             f"{r['cpu_ms']:>7.3f} ms  {100 * r['of_rate']:>5.1f}% of the matmul rate")
            lines.append(f"  bare request (index search + gather + the products, nothing else): CPU p50 "
                         f"{bound['bare_request_cpu_ms']:.3f} ms = {bound['bare_ratio']:.2f} x the floor")
    lines += ["", f"{'bar':<52}{'value':>10}{'limit':>8}  verdict  detail"]
    for b in report["bars"]:
        op = ">=" if b["bar"].startswith(("chosen index recall", "exact")) else "<="
        lines.append(f"{b['bar']:<52}{b['value']:>10.3f}{op:>4}{b['limit']:>4g}  {'PASS' if b['pass'] else 'FAIL':<7}  "
                     f"{b['detail']}")
    if req and "profile" in req:
        lines += ["", "cProfile of requests (by own time):", req["profile"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--impressions", type=int, default=4_000_000)
    ap.add_argument("--popularity-exponent", type=float, default=0.5,
                    help="the simulator's Zipf exponent; 0.5 puts about 3/4 of a 1M catalogue in the training "
                         "vocabulary at 4M impressions (1.0, its default, leaves most items unseen)")
    ap.add_argument("--dim", type=int, default=64, help="retrieval vector size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/bench_serving"), help="data and run directory")
    ap.add_argument("--reuse", action="store_true", help="reuse the prepared data and trained models in --work")
    ap.add_argument("--retriever-epochs", type=int, default=1,
                    help="retriever epochs (one: the best validation recall at 1M items; it overfits after)")
    ap.add_argument("--retriever-seconds", type=float, default=600.0,
                    help="a cap on retriever training; the run says so when it stops there (the vectors then "
                         "depend on the machine's speed)")
    ap.add_argument("--eval-rows", type=int, default=2000, help="rows the retriever's recall is measured on")
    ap.add_argument("--ranker-steps", type=int, default=300)
    ap.add_argument("--train-threads", type=int, default=1,
                    help="torch threads for training (1: on 2 shared cores, 2 threads are several times slower)")
    ap.add_argument("--queries", type=int, default=500, help="user vectors the indexes are tuned on")
    ap.add_argument("--latency-queries", type=int, default=300)
    ap.add_argument("--exact-queries", type=int, default=40)
    ap.add_argument("--batch", type=int, default=1024, help="queries per batched exact search")
    ap.add_argument("--batch-repeats", type=int, default=3)
    ap.add_argument("--types", default="flat,ivf_flat,ivf_sq,ivf_pq,hnsw", help="index types to compare")
    ap.add_argument("--nlist", type=int, default=8192, help="IVF cells")
    ap.add_argument("--train-size", type=int, default=327_680, help="vectors IVF k-means is trained on (40 per cell)")
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--hnsw-ef-construction", type=int, default=40)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5, help="request / floor rounds the requests are split into")
    ap.add_argument("--profile", type=int, default=0, help="cProfile this many requests")
    ap.add_argument("--skip", default="", help="comma-separated stages to skip: index, request")
    ap.add_argument("--quick", action="store_true", help="a small world and short trainings (a smoke run)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_serving.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.items, args.users, args.impressions = 20_000, 5_000, 200_000
        args.retriever_epochs, args.ranker_steps, args.queries = 4, 40, 200
        args.latency_queries, args.exact_queries, args.batch, args.requests = 100, 20, 256, 200
        args.nlist, args.train_size = 256, 10_240
        if args.work == Path("runs/bench_serving"):
            args.work = Path("runs/bench_serving_quick")
        if args.out == Path("runs/bench_serving.json"):
            args.out = Path("runs/bench_serving_quick.json")
    skip = {s for s in args.skip.split(",") if s}
    prepared, run = args.work / "prepared", args.work / "run"

    world = build_world(args, prepared)
    models = train_models(args, prepared, run)
    index = None if "index" in skip else index_bars(args, run)
    request = None if "request" in skip else request_bar(args, run)
    report = {
        "command": [sys.executable, *sys.argv],
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "k": K},
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "faiss": faiss.__version__,
                        "cpus": os.cpu_count(), "load_average": loadavg()},
        "world": {"items": world["items"], "users": world["users"],
                  "splits": {s: world["splits"][s]["rows"] for s in world["splits"]}},
        "models": models, "index": index, "request": request, "bars": verdicts(index, request),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, {k: v for k, v in report.items() if k != "request"}
                      | {"request": request and {k: v for k, v in request.items() if k != "profile"}})
    print(format_report(report))
    print(json.dumps({**report, "request": request and {k: v for k, v in request.items() if k != "profile"}},
                     default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
