"""The main job: data → ranker → retriever → index → cold start → evaluation → report.

`recsys run` (the README's first command) calls `run_main_job`. Every step writes into one
directory (default ``runs/main``) that serving and the app read:

    ranker/        the multi-task ranker (published safetensors + manifest, metrics.jsonl)
    retriever/     the two-tower retriever and its item vectors
    index.json     the chosen index type and tuned parameters (rebuilt from the vectors)
    adapters/      fitted cold-start adapters
    eval/          ranker.json, retrieval.json, end_to_end.json, coldstart/ (with oracle/: the
                   ranker trained again with the measured new users' first events, the gap's reference)
    report.md      tables and plots of all of it

A step whose output is complete is not redone, so a second run is quick; ``fresh=True``
starts over.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.errors import ConfigError
from recsys.io import atomic_write_json

#: The ranker the main job trains: MMoE with uncertainty weighting and ESMM satisfaction.
MAIN_RANKER = {"model": "mmoe", "weighting": "uncertainty", "esmm": True, "epochs": 8, "patience": 2}
#: Cold-start methods the main job fits and measures (all of them: `recsys coldstart evaluate`):
#: the baseline, the tuned fine-tuning bar, one member of the MAML family (ANIL: the last layers,
#: meta-learned rates; 12 s to fit), prototypes, and the meta-learned black-box adapter with MAML
#: inner steps (the best meta-learner measured on MovieLens-100k; ~90 s to fit on 2 cores). The
#: full MAML / FOMAML / Meta-SGD fits take 5-20 minutes each and stay with `recsys coldstart`.
MAIN_COLDSTART = ("none", "finetune", "anil", "proto", "blackbox_maml")
#: The adapter that serving and the app use for a new user unless told otherwise.
DEFAULT_ADAPTER = "blackbox_maml"
#: The main job tunes fine-tuning on a smaller grid than `recsys coldstart evaluate`, to stay
#: within its time budget; it keeps the region the full grid selects on MovieLens-100k (scope
#: user, SGD, summed loss, lr 0.03, 1 step) and spans scope, learning rate, steps and reduction.
MAIN_FINETUNE_GRID = {"scopes": ("user", "user+last"), "optimizers": ("sgd",), "lrs": (0.01, 0.03, 0.1),
                      "steps": (1, 2, 3), "reductions": ("sum", "mean")}


def run_main_job(*, data_dir: str | Path = "data", out: str | Path = "runs/main", source: str = "auto",
                 seed: int = 0, fresh: bool = False, coldstart_methods: tuple[str, ...] | None = None,
                 coldstart_shots: tuple[int, ...] = (0, 1, 3, 5, 10, 20), threads: int = 1,
                 log: Callable[[str], None] | None = None) -> Path:
    """Run every step; return the path of the report.

    `threads` torch threads: 1 by default. On 2 shared cores a second OpenMP thread spins waiting
    for a core another process holds; measured with one other busy process, the black-box
    adapter's meta-training took 486 s on 2 threads and 133 s on 1.
    """
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    timings: dict[str, float] = {}

    def step(name: str):
        log(f"== {name}")
        return _Timer(timings, name)

    with step("data: fetch and prepare MovieLens-100k"):
        prepared = _prepare(data_dir, source, seed, log)
    with step("ranker: train MMoE + uncertainty weighting + ESMM"):
        _train_ranker(prepared, out / "ranker", seed, log)
    with step("retriever: train the two-tower model"):
        _train_retriever(prepared, out / "retriever", seed, log)
    with step("index: choose and tune the candidate index"):
        index = _build_index(out, log)
    with step("evaluate: ranker vs popularity and random on the test split"):
        ranker_eval = _evaluate_ranker(out, log)
    with step("evaluate: retrieval recall and the end-to-end recommender"):
        e2e = evaluate_end_to_end(out, log=log)
    with step("cold start: adapters for new users, and the same-user oracle"):
        cold = _coldstart(out, coldstart_methods, coldstart_shots, seed, log)
    with step("report"):
        from recsys.report import write_report

        report = write_report(out, {"ranker": ranker_eval, "end_to_end": e2e, "index": index, "coldstart": cold,
                                    "timings_s": timings})
    log(f"main job done in {sum(timings.values()):.0f}s")
    return report


class _Timer:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings[self.name] = round(time.perf_counter() - self.start, 2)


# --------------------------------------------------------------------------- steps


def _prepare(data_dir, source: str, seed: int, log) -> Path:
    from recsys.data.prepare import PrepareConfig, prepare_movielens
    from recsys.data.sources.movielens import fetch, raw_dir

    ml = fetch("ml-100k", data_dir, source=source, log=log)
    prepared = Path(data_dir) / "prepared" / "ml-100k"
    manifest = json.loads((raw_dir(data_dir, "ml-100k") / "manifest.json").read_text())
    summary_path = prepared / "summary.json"
    config = PrepareConfig(seed=seed)
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("protocol") == vars(config) and summary.get("source", {}).get("sha256") == manifest["sha256"]:
            log(f"ml-100k: prepared data in {prepared} is up to date")
            return prepared
    prepare_movielens(ml, prepared, config, source=manifest)
    return prepared


def _train_ranker(prepared: Path, run: Path, seed: int, log) -> None:
    from recsys.config import load_config
    from recsys.train import train

    if (run / "manifest.json").exists():
        log(f"ranker: {run} is already trained")
        return
    config = load_config("default", {**MAIN_RANKER, "dataset": str(prepared), "seed": seed})
    train(config, run, resume=(run / "checkpoint.pt").exists(), log=log)


def _train_retriever(prepared: Path, run: Path, seed: int, log) -> None:
    from recsys.train_retriever import RetrieverConfig, train_retriever

    if (run / "manifest.json").exists():
        log(f"retriever: {run} is already trained")
        return
    train_retriever(prepared, run, RetrieverConfig(seed=seed), log=log)


def _build_index(out: Path, log, *, k: int = 500, target_recall: float = 0.95,
                 types: tuple[str, ...] | None = None) -> dict[str, Any]:
    from recsys.retrieval.select import choose_index
    from recsys.train_retriever import load_retrieval_data, load_retriever

    out = Path(out)
    model, vectors, ids, manifest = load_retriever(out / "retriever")
    data = load_retrieval_data(manifest["dataset"], history=model.config.history)
    valid = data.splits["valid"]
    n = min(500, len(valid))
    with torch.no_grad():
        queries = model.user_vectors(valid.x[:n], data.history["valid"][:n]).numpy()
    choice = choose_index(vectors, ids, queries, k=k, target_recall=target_recall,
                          **({"types": types} if types else {}))
    atomic_write_json(out / "index.json", {"type": choice["type"], "params": choice["params"],
                                           "recall": choice["recall"], "k": choice["k"],
                                           "target_recall": target_recall, "table": choice["table"]})
    for row in choice["table"]:
        log(f"index {row['type']:<9} recall@{choice['k']} {row['recall']:.3f} single query p50 {row['p50_ms']:.3f} ms")
    log(f"index: chose {choice['type']}")
    return choice


def _evaluate_ranker(out: Path, log) -> dict[str, Any]:
    from recsys.evaluate import evaluate_run, format_report

    report = evaluate_run(out / "ranker")
    atomic_write_json(out / "eval" / "ranker.json", report)
    log(format_report(report))
    return report


def evaluate_end_to_end(out: str | Path, *, k: int = 10, max_users: int | None = None, log=None) -> dict[str, Any]:
    """Recommend top-k for each warm test user (history = their train + valid clicks, query =
    their last one) and score against their test clicks; popularity on the same users.

    Returns:
        NDCG@k and Recall@k of the recommender and of popularity, retrieval recall@N of the
        test clicks, and request latency p50 / p99 (ms).
    """
    from recsys.serving import Recommender

    out = Path(out)
    rec = Recommender(out)
    rows = {s: pl.read_parquet(rec.prepared / f"{s}.parquet", columns=["user_id", "item_id", "event", "click"])
            .filter(pl.col("click") == 1) for s in ("train", "valid", "test")}
    before = pl.concat([rows["train"], rows["valid"]]).sort("user_id", "event")
    history = {u: g["item_id"].to_list() for (u,), g in before.group_by("user_id", maintain_order=True)}
    targets = {u: set(g["item_id"].to_list()) for (u,), g in rows["test"].group_by("user_id")}
    users = sorted(u for u in targets if u in history and rec.known_user(u))[:max_users]
    popular_order = rec.item_ids[np.argsort(-rec.popularity, kind="stable")]
    ndcg, recall, pop_ndcg, pop_recall, latency, cand_recall = [], [], [], [], [], []
    for u in users:
        seen = history[u]
        res = rec.recommend(user_id=u, history=seen, k=k)
        latency.append(res.timings_ms["total"])
        got = [r.item_id for r in res.items]
        ndcg.append(_ndcg(got, targets[u], k))
        recall.append(len(set(got) & targets[u]) / len(targets[u]))
        cand_recall.append(len({i for i, _ in res.candidates} & targets[u]) / len(targets[u]))
        seen_set = set(seen)
        pop = [int(i) for i in popular_order if int(i) not in seen_set][:k]
        pop_ndcg.append(_ndcg(pop, targets[u], k))
        pop_recall.append(len(set(pop) & targets[u]) / len(targets[u]))
    result = {
        "users": len(users), "k": k, "n_candidates": rec.n_candidates, "index": rec.index.name,
        "recommender": {f"ndcg@{k}": float(np.mean(ndcg)), f"recall@{k}": float(np.mean(recall))},
        "popularity": {f"ndcg@{k}": float(np.mean(pop_ndcg)), f"recall@{k}": float(np.mean(pop_recall))},
        "retrieval": {f"recall@{rec.n_candidates}": float(np.mean(cand_recall))},
        "latency_ms": {"p50": float(np.percentile(latency, 50)), "p99": float(np.percentile(latency, 99))},
    }
    atomic_write_json(out / "eval" / "end_to_end.json", result)
    if log:
        log(f"end to end on {len(users)} test users: NDCG@{k} {result['recommender'][f'ndcg@{k}']:.4f} "
            f"(popularity {result['popularity'][f'ndcg@{k}']:.4f}), Recall@{k} {result['recommender'][f'recall@{k}']:.4f} "
            f"(popularity {result['popularity'][f'recall@{k}']:.4f}); candidate recall@{rec.n_candidates} "
            f"{result['retrieval'][f'recall@{rec.n_candidates}']:.4f}; latency p50 {result['latency_ms']['p50']:.1f} ms, "
            f"p99 {result['latency_ms']['p99']:.1f} ms")
    return result


def _ndcg(ranked: list[int], relevant: set[int], k: int) -> float:
    dcg = sum(1.0 / np.log2(r + 2) for r, i in enumerate(ranked[:k]) if i in relevant)
    idcg = sum(1.0 / np.log2(r + 2) for r in range(min(k, len(relevant))))
    return dcg / idcg if idcg else 0.0


def _coldstart(out: Path, methods, shots: tuple[int, ...], seed: int, log) -> dict[str, Any]:
    """Fit the cold-start adapters (saved to ``out/adapters`` for serving and the app, reused on
    a second run) and measure them on the test new users; outputs in ``out/eval/coldstart``."""
    from recsys.coldstart import cold_start_split, evaluate_methods, format_markdown, load_run, write_report

    from recsys.meta.registry import ADAPTERS

    run = load_run(out / "ranker")
    split = cold_start_split(run.dataset, seed=seed)
    methods = list(methods or MAIN_COLDSTART)
    # validation episodes are built like the measured ones: query rows after the largest K
    fit = {"query_after": max(shots), "valid_k": min(5, max(shots))}
    options = {m: {k: v for k, v in fit.items() if k in ADAPTERS[m].defaults} for m in methods if m in ADAPTERS}
    if "finetune" in options:
        options["finetune"].update(MAIN_FINETUNE_GRID)
    report = evaluate_methods(run, split, methods, shots, seed=seed, options=options,
                              adapters_dir=out / "adapters", reuse=True,
                              oracle_dir=out / "eval" / "coldstart" / "oracle", log=log)
    paths = write_report(report, out / "eval" / "coldstart")
    return {"markdown": format_markdown(report), "curve": str(paths["curve.png"].relative_to(out)), "report": report}
