"""Offline evaluation of a trained ranker, beside popularity and random baselines.

On a split (the test split by default), for each task:
  * binary tasks: pooled AUC and logloss; per-user AUC averaged over users that have both
    classes (the count of users skipped is reported); NDCG@10 and Recall@10 of each user's
    candidates (their positives and sampled negatives) ranked by the task's prediction;
  * like among clicked rows ("satisfaction ranking"): AUC of the like prediction on the rows
    the user engaged with, where popularity alone is a weak ranker;
  * regression tasks: RMSE and MAE on observed rows (rating: clicked rows).
Baselines scored the same way: item popularity in the training split (clicks for engagement,
likes for satisfaction, mean rating for rating) and a seeded random score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys import metrics as M
from recsys.data.fields import TASK_KINDS
from recsys.data.stream import StreamedSplit
from recsys.data.tensors import TensorData

K = 10


@torch.no_grad()
def predict(model: torch.nn.Module, data: TensorData, tasks: tuple[str, ...], *, esmm: bool = False,
            batch_size: int = 16384) -> dict[str, np.ndarray]:
    """Per-task predictions (probabilities / values) for every row of `data`, at serving time
    (no position), plus ``like_given_click`` = p(like | click) under ESMM.

    Returns:
        task -> [N] float64 array.
    """
    from recsys.mtl.losses import predict_proba

    was_training = model.training
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(data), batch_size):
        out = model(data.x[start:start + batch_size])
        preds = predict_proba(out, tasks, esmm)
        if esmm and "like" in tasks:
            preds["like_given_click"] = torch.sigmoid(out["like"])
        for k, v in preds.items():
            chunks.setdefault(k, []).append(v.float().cpu())
    model.train(was_training)
    return {k: torch.cat(v).double().numpy() for k, v in chunks.items()}


def task_metrics(y: np.ndarray, users: np.ndarray, pred: dict[str, np.ndarray], tasks: tuple[str, ...],
                 *, full: bool = True) -> dict[str, Any]:
    """Metrics of predictions `pred` against labels `y` [N, T] (columns in `tasks` order).

    Args:
        y: [N, T] labels, NaN = missing.
        users: [N] user of each row (for per-user metrics).
        pred: task -> [N] predictions; tasks of `y` without a prediction are skipped (a model
            trained on some of the data set's tasks is still measured with all its labels).
        tasks: the column order of `y` (the data set's tasks).
        full: add per-user AUC and NDCG/Recall@10 (the expensive part).
    """
    out: dict[str, Any] = {}
    click = y[:, tasks.index("click")] if "click" in tasks else None
    for j, task in enumerate(tasks):
        if task not in pred:
            continue
        label, p = y[:, j], pred[task]
        seen = ~np.isnan(label)
        label, p, u = label[seen], p[seen], users[seen]
        if TASK_KINDS[task] == "binary":
            res: dict[str, Any] = {"auc": M.auc(label, p), "logloss": M.logloss(label, p)}
            if full:
                g = M.grouped_auc(label, p, u)
                ndcg, recall = M.grouped_ndcg_recall(label, p, u, k=K)
                res.update({"user_auc": g.mean, "user_auc_users": g.used, "user_auc_skipped": g.skipped,
                            f"ndcg@{K}": _nanmean(ndcg), f"recall@{K}": _nanmean(recall)})
            out[task] = res
        else:
            out[task] = {"rmse": M.rmse(label, p), "mae": M.mae(label, p)}
    if click is not None and "like" in tasks and ("like_given_click" in pred or "like" in pred):
        clicked = click == 1
        score = pred.get("like_given_click", pred.get("like"))[clicked]
        like = y[clicked, tasks.index("like")]
        res = {"auc": M.auc(like, score)}
        if full:
            g = M.grouped_auc(like, score, users[clicked])
            res.update({"user_auc": g.mean, "user_auc_users": g.used, "user_auc_skipped": g.skipped})
        out["like_among_clicks"] = res
    return out


def validation_metrics(model, data: TensorData | StreamedSplit, tasks: tuple[str, ...], *,
                       esmm: bool = False, pred: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Pooled metrics for early stopping; ``score`` = mean AUC of the binary tasks (else -mean RMSE).

    Args:
        data: the split as tensors, or streamed: then it is predicted one window at a time and
            only the predictions, labels and users ([N] arrays) are held.
        pred: `predict`'s output for the rows of `data` (a `TensorData`) made elsewhere, e.g.
            gathered from the processes of a distributed run; default: predict here.
    """
    if isinstance(data, TensorData):
        pred = predict(model, data, tasks, esmm=esmm) if pred is None else pred
        y, users = data.y.cpu().numpy(), data.user.cpu().numpy()
    else:
        parts = [(predict(model, w, tasks, esmm=esmm), w.y.cpu().numpy(), w.user.cpu().numpy())
                 for w in data.windows()]
        pred = {k: np.concatenate([p[k] for p, _, _ in parts]) for k in (parts[0][0] if parts else {})}
        y = np.concatenate([y for _, y, _ in parts]) if parts else np.zeros((0, len(data.schema.tasks)), np.float32)
        users = np.concatenate([u for _, _, u in parts]) if parts else np.zeros(0, np.int64)
    res = task_metrics(y, users, pred, data.schema.tasks, full=False)
    flat: dict[str, Any] = {}
    aucs, errs = [], []
    for task, m in res.items():
        for name, value in m.items():
            flat[f"{task}_{name}"] = value
        if task in tasks and TASK_KINDS[task] == "binary" and m.get("auc") is not None:
            aucs.append(m["auc"])
        elif task in tasks and TASK_KINDS[task] == "regression":
            errs.append(m["rmse"])
    flat["score"] = float(np.mean(aucs)) if aucs else -float(np.mean(errs))
    return flat


def item_stats(train: TensorData) -> pl.DataFrame:
    """Per item of the training split: rows shown, clicks, likes and each regression task's mean."""
    tasks = train.schema.tasks
    y = train.y.cpu().numpy()
    cols = {t: y[:, j] for j, t in enumerate(tasks)}
    frame = pl.DataFrame({"item_id": train.item.cpu().numpy(), **cols}).fill_nan(None)
    aggs = [pl.len().alias("shown")]
    for t in tasks:
        if TASK_KINDS[t] == "binary":
            aggs.append(pl.col(t).sum().alias(f"{t}_sum"))
        else:
            aggs.append(pl.col(t).mean().fill_null(frame[t].mean()).alias(f"{t}_mean"))
    return frame.group_by("item_id").agg(aggs)


def baseline_predictions(data: TensorData, train: TensorData, tasks: tuple[str, ...], *, seed: int = 0
                         ) -> dict[str, dict[str, np.ndarray]]:
    """Popularity and random scores for every row of `data`, from the training split `train`.

    Popularity: an item's smoothed training rate for binary tasks ((hits + 1) / (shown + 2); for
    like among clicks, likes per click) and its training mean for regression tasks (the global
    mean for an unseen item). Random: uniform scores, and draws from the training labels for
    regression tasks.
    """
    stats = item_stats(train)
    rows = pl.DataFrame({"item_id": data.item.cpu().numpy()}).join(stats, on="item_id", how="left",
                                                                   maintain_order="left")
    shown = rows["shown"].fill_null(0).to_numpy().astype(np.float64)
    popularity: dict[str, np.ndarray] = {}
    for t in tasks:
        if TASK_KINDS[t] == "binary":
            popularity[t] = (rows[f"{t}_sum"].fill_null(0).to_numpy() + 1.0) / (shown + 2.0)
        else:
            global_mean = float(np.nanmean(train.y[:, train.schema.tasks.index(t)].cpu().numpy()))
            popularity[t] = rows[f"{t}_mean"].fill_null(global_mean).to_numpy().astype(np.float64)
    if {"click", "like"} <= set(tasks):
        clicks = rows["click_sum"].fill_null(0).to_numpy()
        popularity["like_given_click"] = (rows["like_sum"].fill_null(0).to_numpy() + 1.0) / (clicks + 2.0)
    rng = np.random.default_rng(seed)
    random: dict[str, np.ndarray] = {}
    for t in tasks:
        if TASK_KINDS[t] == "binary":
            random[t] = rng.uniform(size=len(data))
        else:
            labels = train.y[:, train.schema.tasks.index(t)].cpu().numpy()
            random[t] = rng.choice(labels[~np.isnan(labels)], size=len(data)).astype(np.float64)
    return {"popularity": popularity, "random": random}


def evaluate_baselines(dataset: str | Path, *, split: str = "test") -> dict[str, Any]:
    """Popularity and random scores of the data set's tasks on `split`, measured like a model."""
    from recsys.data.tensors import load_split

    data = load_split(dataset, split)
    tasks = data.schema.tasks
    y, users = data.y.numpy(), data.user.numpy()
    return {name: task_metrics(y, users, pred, tasks)
            for name, pred in baseline_predictions(data, load_split(dataset, "train"), tasks).items()}


def evaluate_run(run_dir: str | Path, *, split: str = "test", baselines: bool = True) -> dict[str, Any]:
    """Load a published run and evaluate it (and, by default, the baselines) on `split`.

    Returns:
        ``{"model": {...}, "popularity": {...}, "random": {...}, "split": ..., "rows": N, "users": U}``.
    """
    from recsys.checkpoint import load_published
    from recsys.data.tensors import load_schema, load_split
    from recsys.errors import CheckpointError
    from recsys.models.registry import build_from_spec

    manifest, state = load_published(run_dir)
    dataset = Path(manifest["dataset"])
    if not (dataset / "schema.json").exists():
        raise CheckpointError(f"{run_dir}: its data set {dataset} is gone; prepare it again")
    schema = load_schema(dataset)
    model = build_from_spec(manifest["model"], schema)
    model.load_state_dict(state)
    tasks = tuple(manifest["tasks"])
    data = load_split(dataset, split)
    y, users = data.y.numpy(), data.user.numpy()
    report: dict[str, Any] = {"split": split, "rows": len(data), "users": int(len(np.unique(users))),
                              "dataset": str(dataset), "run": str(run_dir)}
    report["model"] = task_metrics(y, users, predict(model, data, tasks, esmm=manifest.get("esmm", False)),
                                   schema.tasks)
    if baselines:
        report.update(evaluate_baselines(dataset, split=split))
    return report


def _nanmean(a: np.ndarray) -> float | None:
    a = a[~np.isnan(a)]
    return float(a.mean()) if len(a) else None


def format_report(report: dict[str, Any]) -> str:
    """A readable table: one row per (task, metric), one column per scorer."""
    scorers = [s for s in ("model", "popularity", "random") if s in report]
    lines = [f"{report['split']} split of {report['dataset']}: {report['rows']} rows, {report['users']} users",
             f"{'task':<18}{'metric':<18}" + "".join(f"{s:>12}" for s in scorers)]
    for task, metrics in report["model"].items():
        for name in metrics:
            if name.endswith(("_users", "_skipped")):
                continue
            cells = []
            for s in scorers:
                v = report[s].get(task, {}).get(name)
                cells.append(f"{v:>12.4f}" if isinstance(v, float) else f"{'-':>12}")
            lines.append(f"{task:<18}{name:<18}" + "".join(cells))
    return "\n".join(lines)
