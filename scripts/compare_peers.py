"""Quality side by side: torch-rechub and DeepCTR-Torch multi-task models against ours.

Every model is trained on the same prepared files, with the same embedding size (16), batch
size, epoch budget and thread count, and early-stopped on the same validation score: the mean of
click AUC and like AUC on the valid split, patience 2, keeping the best epoch's weights. Each is
then scored on the TEST split with `recsys.metrics.auc`:

    click AUC            all rows
    like AUC             all rows (like = 0 on unclicked rows); ESMM-style models use p(click & like)
    like | click AUC     clicked rows only, ranked by p(like | click) (the CVR tower) for ESMM-style
                         models and by p(like) otherwise

next to the item-popularity baseline of `recsys.evaluate.baseline_predictions`.

Peers (see `_peers.py` for the feature mapping and every workaround): SharedBottom, MMOE, PLE and
ESMM of torch-rechub (trained by its ``MTLTrainer.train_one_epoch``) and of DeepCTR-Torch (its
``fit``, one epoch per call), tasks click and like; they have no masked rating regression. Ours:
each ``--ours`` JSON dict overrides the ``default`` preset (`recsys.config.load_config`) and is
trained by `recsys.train.train` and scored by `recsys.evaluate.evaluate_run`, tasks click, like
and rating. The fairness keys (dataset, tasks, epochs, batch_size, patience, seed, threads,
device) are set by this script and win over the dicts; a ``"name"`` key names the row.

Usage:
    python scripts/compare_peers.py --epochs 1 --seeds 0 --max-rows 20000 --out runs/compare_peers_smoke.json  # smoke
    python scripts/compare_peers.py                                              # full, see --jobs
    python scripts/compare_peers.py --ours '[{"model": "mmoe", "weighting": "equal"}]' --peers rechub

Output: a table (mean ± sample std over seeds) on stdout, the best peer and our best
configuration per metric with the margin ours − best peer, and a JSON file (``--out``) with
per-seed numbers, validation histories, timings, settings and the peers' workarounds.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # the peers' trainers draw progress bars per epoch

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import ARCHS, PEERS, WORKAROUNDS, PeerSpec, make_runner, peer_versions  # noqa: E402

from recsys import metrics as M  # noqa: E402
from recsys.data.tensors import TensorData, load_split  # noqa: E402
from recsys.io import atomic_write_json  # noqa: E402

METRICS: tuple[str, ...] = ("click_auc", "like_auc", "like_among_clicks_auc")
LABELS = {"click_auc": "click AUC", "like_auc": "like AUC", "like_among_clicks_auc": "like|click AUC"}
DEFAULT_OURS = [
    {"model": "mmoe", "weighting": "uncertainty"},
    {"model": "ple", "weighting": "uncertainty"},
    {"model": "shared_bottom", "weighting": "equal"},
    {"model": "mmoe", "weighting": "uncertainty", "esmm": True},
    # dropout 0.2 after each hidden layer: the runs above peak on validation at epoch 3-7 of 10
    {"model": "mmoe", "weighting": "uncertainty", "model_options": {"dropout": 0.2}},
    {"model": "mmoe", "weighting": "uncertainty", "esmm": True, "model_options": {"dropout": 0.2}},
]
OUR_TASKS = ["click", "like", "rating"]
SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------------------------------- data


def prepare_data(src: Path, work: Path, max_rows: int, seed: int = 0) -> Path:
    """The data set every model reads: `src` itself, or a seeded subset of at most `max_rows`
    rows per split written under `work` (smoke runs)."""
    if not max_rows:
        return src
    import polars as pl

    dst = work / "data"
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("schema.json", "vocab.json"):
        if (src / name).exists():
            (dst / name).write_bytes((src / name).read_bytes())
    for i, split in enumerate(SPLITS):
        frame = pl.read_parquet(src / f"{split}.parquet")
        if frame.height > max_rows:
            frame = frame.sample(n=max_rows, seed=seed + i).sort(["user_id", "timestamp", "item_id"])
        frame.write_parquet(dst / f"{split}.parquet")
    return dst


def test_metrics(data: TensorData, pred: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Click, like and like-among-clicks AUC of predictions `pred` on `data`."""
    tasks = data.schema.tasks
    y = data.y.numpy()
    click, like = y[:, tasks.index("click")], y[:, tasks.index("like")]
    seen = ~np.isnan(like)
    clicked = click == 1
    ranked = pred.get("like_given_click", pred["like"])
    return {
        "click_auc": M.auc(click, pred["click"]),
        "like_auc": M.auc(like[seen], pred["like"][seen]),
        "like_among_clicks_auc": M.auc(like[clicked], ranked[clicked]),
    }


def valid_score(data: TensorData, pred: dict[str, np.ndarray]) -> float:
    """The early-stopping score: mean of click AUC and like AUC."""
    m = test_metrics(data, pred)
    return float(np.mean([m["click_auc"], m["like_auc"]]))


# ---------------------------------------------------------------------------------------- jobs


def run_peer(job: dict[str, Any]) -> dict[str, Any]:
    """Train one peer model with early stopping on our validation score; score it on test."""
    torch.set_num_threads(job["threads"])
    data = Path(job["data"])
    train, valid, test = (load_split(data, s) for s in SPLITS)
    spec = PeerSpec.from_json(job["peer_spec"])
    start = time.perf_counter()
    runner = make_runner(job["peer"], job["arch"], train.schema, train, seed=job["seed"],
                         batch_size=job["batch_size"], spec=spec)
    best, best_epoch, best_state, bad, history = -math.inf, -1, None, 0, []
    train_s = eval_s = 0.0
    for epoch in range(job["epochs"]):
        t0 = time.perf_counter()
        runner.train_epoch(epoch)
        t1 = time.perf_counter()
        score = valid_score(valid, runner.predict(valid))
        eval_s += time.perf_counter() - t1
        train_s += t1 - t0
        history.append({"epoch": epoch, "valid_score": score, "train_seconds": t1 - t0})
        if score > best:
            best, best_epoch, bad = score, epoch, 0
            best_state = copy.deepcopy(runner.model.state_dict())
        else:
            bad += 1
            if bad >= job["patience"]:
                break
    runner.model.load_state_dict(best_state)
    t0 = time.perf_counter()
    metrics = test_metrics(test, runner.predict(test))
    return {**_job_id(job), "test": metrics, "valid_best": best, "best_epoch": best_epoch,
            "epochs_run": len(history), "history": history,
            "seconds": {"total": time.perf_counter() - start, "train": train_s,
                        "train_per_epoch": train_s / len(history), "valid_eval": eval_s,
                        "test_eval": time.perf_counter() - t0},
            "params": sum(p.numel() for p in runner.model.parameters())}


def run_ours(job: dict[str, Any]) -> dict[str, Any]:
    """Train one of our configurations through our own API and evaluate it on test."""
    from recsys.config import load_config
    from recsys.evaluate import evaluate_run
    from recsys.train import train

    torch.set_num_threads(job["threads"])
    config = load_config("default", job["config"])
    run_dir = Path(job["work"]) / "runs" / f"{job['name']}-seed{job['seed']}".replace("/", "_")
    start = time.perf_counter()
    log = (lambda m: print(f"  {job['name']} s{job['seed']}: {m}", file=sys.stderr)) if job["verbose"] else None
    # a run killed earlier under --keep-runs resumes from its checkpoint (our trainer's own resume)
    result = train(config, run_dir, log=log or (lambda m: None), resume=(run_dir / "checkpoint.pt").exists())
    train_s = time.perf_counter() - start
    t0 = time.perf_counter()
    report = evaluate_run(run_dir, split="test")
    model = report["model"]
    metrics = {"click_auc": model["click"]["auc"], "like_auc": model["like"]["auc"],
               "like_among_clicks_auc": model["like_among_clicks"]["auc"]}
    history = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "epoch":
            history.append({"epoch": rec["epoch"], "valid_score": rec["valid"]["score"]})
    extra = {"rating_rmse": model.get("rating", {}).get("rmse")}
    return {**_job_id(job), "test": metrics, "test_extra": extra, "valid_best": result.best_score,
            "best_epoch": result.best_epoch, "epochs_run": result.epochs, "history": history,
            "seconds": {"total": time.perf_counter() - start, "train": train_s,
                        "train_per_epoch": train_s / max(1, result.epochs),
                        "test_eval": time.perf_counter() - t0},
            "config": config.to_json()}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    try:
        return run_peer(job) if job["kind"] == "peer" else run_ours(job)
    except Exception as err:  # one failed model must not lose the others' numbers
        import traceback

        return {**_job_id(job), "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}


def _job_id(job: dict[str, Any]) -> dict[str, Any]:
    return {"kind": job["kind"], "name": job["name"], "seed": job["seed"], "fingerprint": fingerprint(job)}


def fingerprint(job: dict[str, Any]) -> str:
    """What decides a job's result (not where its files live): equal fingerprints may be reused."""
    keep = {k: v for k, v in job.items() if k not in ("work", "verbose", "cost", "data", "config")}
    if "config" in job:
        keep["config"] = {k: v for k, v in job["config"].items() if k != "dataset"}
    keep["data"] = job["source"]
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def our_name(overrides: dict[str, Any]) -> str:
    """A row name for one of our configurations, e.g. ``ours:mmoe+uncertainty+esmm``."""
    if "name" in overrides:
        return f"ours:{overrides['name']}"
    parts = [str(overrides.get("model", "mmoe")), str(overrides.get("weighting", "uncertainty"))]
    if overrides.get("esmm"):
        parts.append("esmm")
    rest = {k: v for k, v in overrides.items() if k not in ("model", "weighting", "esmm")}
    if rest:
        parts.append(json.dumps(rest, sort_keys=True, separators=(",", ":")))
    return "ours:" + "+".join(parts)


def make_jobs(args: argparse.Namespace, data: Path, work: Path, ours: list[dict[str, Any]],
              spec: PeerSpec) -> list[dict[str, Any]]:
    fixed = {"epochs": args.epochs, "batch_size": args.batch_size, "patience": args.patience,
             "threads": args.threads}
    source = f"{Path(args.data).resolve()}?max_rows={args.max_rows}"
    cost = {"ple": 4, "mmoe": 3, "esmm": 2, "shared_bottom": 1}
    jobs = []
    for seed in args.seeds:
        for peer in args.peers:
            for arch in args.archs:
                jobs.append({"kind": "peer", "name": f"{peer}:{arch}", "peer": peer, "arch": arch, "seed": seed,
                             "data": str(data), "source": source, "peer_spec": spec.to_json(),
                             "cost": cost[arch], **fixed})
        for overrides in ours:
            config = {k: v for k, v in overrides.items() if k != "name"}
            config.update({"dataset": str(data), "tasks": OUR_TASKS, "seed": seed, "device": "cpu", **fixed})
            jobs.append({"kind": "ours", "name": our_name(overrides), "seed": seed, "config": config,
                         "source": source, "work": str(work), "verbose": args.verbose,
                         "cost": cost.get(config.get("model", "mmoe"), 3), **fixed})
    return jobs


# ---------------------------------------------------------------------------------------- summary


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: mean, sample std and per-seed values of each metric, and mean timings."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        if "error" in run:
            continue
        row = out.setdefault(run["name"], {"kind": run["kind"], "seeds": [], "metrics": {},
                                           "best_epoch": [], "epochs_run": [], "train_per_epoch_s": []})
        row["seeds"].append(run["seed"])
        row["best_epoch"].append(run["best_epoch"])
        row["epochs_run"].append(run["epochs_run"])
        row["train_per_epoch_s"].append(run["seconds"]["train_per_epoch"])
        for m in METRICS:
            row["metrics"].setdefault(m, {"values": []})["values"].append(run["test"][m])
    for row in out.values():
        for stats in row["metrics"].values():
            vals = [v for v in stats["values"] if v is not None]
            stats["mean"] = float(np.mean(vals)) if vals else None
            stats["std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        row["train_per_epoch_s_mean"] = float(np.mean(row["train_per_epoch_s"]))
    return out


def best_per_metric(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each metric: the best peer, our best configuration, and ours − best peer."""
    out = {}
    for m in METRICS:
        best: dict[str, tuple[str, float] | None] = {"peer": None, "ours": None}
        for name, row in summary.items():
            mean = row["metrics"][m]["mean"]
            if mean is None:
                continue
            cur = best[row["kind"]]
            if cur is None or mean > cur[1]:
                best[row["kind"]] = (name, mean)
        peer, ours = best["peer"], best["ours"]
        out[m] = {"best_peer": peer[0] if peer else None, "best_peer_mean": peer[1] if peer else None,
                  "best_ours": ours[0] if ours else None, "best_ours_mean": ours[1] if ours else None,
                  "margin_ours_minus_peer": ours[1] - peer[1] if peer and ours else None}
    return out


def format_table(summary: dict[str, dict[str, Any]], baseline: dict[str, float | None],
                 best: dict[str, dict[str, Any]]) -> str:
    width = max([len(n) for n in summary] + [20]) + 2
    head = f"{'model':<{width}}" + "".join(f"{LABELS[m]:>20}" for m in METRICS) + f"{'best ep':>9}{'s/epoch':>9}"
    lines = [head, "-" * len(head)]
    for kind in ("peer", "ours"):
        for name, row in summary.items():
            if row["kind"] != kind:
                continue
            cells = []
            for m in METRICS:
                s = row["metrics"][m]
                cells.append(f"{s['mean']:.4f} ± {s['std']:.4f}".rjust(20) if s["mean"] is not None else f"{'-':>20}")
            lines.append(f"{name:<{width}}" + "".join(cells)
                         + f"{np.mean(row['best_epoch']):>9.1f}{row['train_per_epoch_s_mean']:>9.1f}")
        lines.append("")
    lines.append(f"{'popularity baseline':<{width}}"
                 + "".join(f"{v:>20.4f}" if v is not None else f"{'-':>20}" for v in baseline.values()))
    lines.append("s/epoch: wall seconds per epoch (peers: training only; ours: the whole train() call incl. "
                 "per-epoch validation and checkpoints)")
    lines.append("")
    lines.append("best per metric (mean over seeds):")
    for m, b in best.items():
        if b["best_peer"] is None or b["best_ours"] is None:
            continue
        lines.append(f"  {LABELS[m]:<15} best peer {b['best_peer']} {b['best_peer_mean']:.4f} | best ours "
                     f"{b['best_ours']} {b['best_ours_mean']:.4f} | ours − peer {b['margin_ours_minus_peer']:+.4f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/prepared/ml-100k", help="prepared data set directory")
    p.add_argument("--out", default="runs/compare_peers.json", help="JSON report path")
    p.add_argument("--epochs", type=int, default=10, help="epoch budget of every model")
    p.add_argument("--patience", type=int, default=2, help="epochs without a better valid score before stopping")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of every model")
    p.add_argument("--max-rows", type=int, default=0, help="cap each split at this many rows (smoke runs)")
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument("--ours", default=json.dumps(DEFAULT_OURS),
                   help="JSON list of override dicts for load_config('default', ...); [] for none")
    p.add_argument("--peer-spec", default="{}", help="JSON overrides of the peers' sizes (see _peers.PeerSpec)")
    p.add_argument("--jobs", type=int, default=1,
                   help="models trained at once, in separate processes (each with --threads threads)")
    p.add_argument("--keep-runs", default="", help="keep our run directories here (default: a temporary dir)")
    p.add_argument("--verbose", action="store_true", help="print our trainer's per-epoch lines")
    p.add_argument("--resume", action="store_true",
                   help="reuse the finished runs in --out whose settings match; train only the others")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.patience < 1 or args.batch_size < 1 or args.threads < 1 or args.jobs < 1:
        p.error("--epochs, --patience, --batch-size, --threads and --jobs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    src = Path(args.data)
    if not (src / "schema.json").exists():
        print(f"error: no prepared data set at {src}; run `recsys data prepare ml-100k` "
              "(or pass --data DIR)", file=sys.stderr)
        return 2
    try:
        ours = json.loads(args.ours)
        spec = PeerSpec.from_json(json.loads(args.peer_spec))
    except (json.JSONDecodeError, ValueError, TypeError) as err:
        print(f"error: --ours / --peer-spec: {err}", file=sys.stderr)
        return 2
    if isinstance(ours, dict):
        ours = [ours]
    if not isinstance(ours, list) or not all(isinstance(o, dict) for o in ours):
        print("error: --ours must be a JSON list of objects, e.g. '[{\"model\": \"mmoe\"}]'", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="compare_peers-") as tmp:
        work = Path(args.keep_runs) if args.keep_runs else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = prepare_data(src, work, args.max_rows)
        all_jobs = make_jobs(args, data, work, ours, spec)
        jobs = all_jobs
        reused = _reusable(Path(args.out), jobs) if args.resume else []
        done_keys = {r["fingerprint"] for r in reused}
        jobs = [j for j in jobs if fingerprint(j) not in done_keys]
        if reused:
            print(f"compare_peers: reusing {len(reused)} finished runs from {args.out}", file=sys.stderr)
        print(f"compare_peers: {len(jobs)} trainings on {data} (threads={args.threads}, jobs={args.jobs}, "
              f"epochs<={args.epochs}, seeds={args.seeds})", file=sys.stderr, flush=True)
        runs = reused + _run_all(jobs, args,
                                 lambda partial: _write(args, reused + partial, data, ours, spec, started, None))
        position = {fingerprint(j): i for i, j in enumerate(all_jobs)}
        runs.sort(key=lambda r: position.get(r["fingerprint"], len(position)))
        baseline = _baseline(data)
        report = _write(args, runs, data, ours, spec, started, baseline)
    print(format_table(report["summary"], report["baseline"]["popularity"], report["best"]))
    failed = [r for r in runs if "error" in r]
    for r in failed:
        print(f"FAILED {r['name']} seed {r['seed']}: {r['error']}", file=sys.stderr)
    print(f"\nwrote {args.out}")
    return 1 if failed else 0


def _run_all(jobs: list[dict[str, Any]], args: argparse.Namespace, checkpoint) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    seeds = list(dict.fromkeys(j["seed"] for j in jobs))
    order = sorted(jobs, key=lambda j: (seeds.index(j["seed"]), -j["cost"])) if args.jobs > 1 else jobs

    def done(run: dict[str, Any]) -> None:
        runs.append(run)
        if "error" in run:
            msg = f"ERROR {run['error']}"
        else:
            t = run["test"]
            msg = (f"click {t['click_auc']:.4f} like {t['like_auc']:.4f} like|click {t['like_among_clicks_auc']:.4f}"
                   f" (best epoch {run['best_epoch']}, {run['epochs_run']} epochs, {run['seconds']['total']:.0f} s)")
        print(f"[{len(runs)}/{len(jobs)}] {run['name']} seed {run['seed']}: {msg}", file=sys.stderr, flush=True)
        checkpoint(runs)

    if args.jobs == 1:
        for job in order:
            done(run_job(job))
    else:
        with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            for run in pool.imap_unordered(run_job, order):
                done(run)
    return runs


def _reusable(path: Path, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished, error-free runs in an earlier report whose fingerprint matches one of `jobs`."""
    if not path.exists():
        return []
    wanted = {fingerprint(j) for j in jobs}
    runs = json.loads(path.read_text()).get("runs", [])
    return [r for r in runs if "error" not in r and r.get("fingerprint") in wanted]


def _baseline(data: Path) -> dict[str, Any]:
    from recsys.evaluate import baseline_predictions

    train, test = load_split(data, "train"), load_split(data, "test")
    pop = baseline_predictions(test, train, test.schema.tasks)["popularity"]
    return {"popularity": test_metrics(test, pop)}


def _write(args: argparse.Namespace, runs: list[dict[str, Any]], data: Path, ours: list[dict[str, Any]],
           spec: PeerSpec, started: float, baseline: dict[str, Any] | None) -> dict[str, Any]:
    summary = summarise(runs)
    rows = {s: None for s in SPLITS}
    report = {
        "command": [sys.executable, *sys.argv],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_seconds": time.time() - started,  # of this invocation (runs reused by --resume not included)
        "complete": baseline is not None,
        "settings": {"data": str(Path(args.data).resolve()), "max_rows": args.max_rows, "epochs": args.epochs,
                     "patience": args.patience, "batch_size": args.batch_size, "seeds": args.seeds,
                     "threads": args.threads, "jobs": args.jobs, "resume": args.resume,
                     "peers": args.peers, "archs": args.archs,
                     "ours": ours, "our_tasks": OUR_TASKS, "peer_tasks": ["click", "like"],
                     "peer_spec": spec.to_json(), "embedding_dim": spec.dim},
        "environment": {**peer_versions(), "python": platform.python_version(), "cpus": os.cpu_count(),
                        "machine": platform.machine()},
        "protocol": [
            "Same prepared files, embedding size, batch size, epoch budget and threads for every model.",
            "Early stopping for everyone on mean(click AUC, like AUC) on the valid split, patience "
            f"{args.patience}, best epoch's weights restored; peers via per-epoch training + our evaluation.",
            "Peers train click and like only (no masked rating regression); ours train click, like, rating.",
            "Peer features: single-valued fields as sparse features with the schema's vocabulary sizes; genre "
            "lists (width 6, PAD 0) through the peer's multi-valued feature with mean pooling over non-PAD ids "
            "(torch-rechub SequenceFeature, DeepCTR VarLenSparseFeat); item and query fields of one vocabulary "
            "share a table, as ours do.",
            "Peer ESMM: like = p(ctr) * p(cvr) for like AUC and early stopping; like|click ranked by p(cvr). "
            "Ours with esmm=true: the same reading of our like output.",
            f"Peer optimiser: Adam lr={spec.lr}, weight_decay={spec.weight_decay} (ours: the default preset's "
            "Adam lr 2e-3, no weight decay); other peer hyper-parameters are the libraries' defaults.",
            "std is the sample standard deviation over seeds (0 for one seed).",
            "Timings are wall seconds on a shared machine; with --jobs > 1 models train concurrently. "
            "seconds.train_per_epoch: peers = training only; ours = the whole recsys.train.train call (data "
            "loading, per-epoch validation, checkpoints, publishing) divided by its epochs.",
            "like|click AUC of non-ESMM models ranks clicked rows by p(like) as specified, which carries click "
            "propensity; ranking them by p(like)/p(click) instead scores higher (a torch-rechub MMOE trained 4 "
            "epochs: 0.7055 by p(like), 0.7738 by p(like)/p(click)), and the popularity baseline uses likes per "
            "click. Compare like|click across ESMM-style models, or across non-ESMM models, not between them.",
        ],
        "workarounds": WORKAROUNDS,
        "data": {"dir": str(data), "rows": rows},
        "baseline": baseline or {},
        "runs": runs,
        "summary": summary,
        "best": best_per_metric(summary),
    }
    if baseline is not None:
        report["data"]["rows"] = {s: len(load_split(data, s)) for s in SPLITS}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, report)
    return report


if __name__ == "__main__":
    sys.exit(main())
