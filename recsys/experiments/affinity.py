"""Task affinity: which tasks belong together (the Taskonomy question, measured by training).

Taskonomy (Zamir et al., CVPR'18) asked which tasks transfer to which; Standley et al. ("Which
Tasks Should Be Learned Together in Multi-task Learning?", ICML'20) answered it for multi-task
networks the direct way, which is the one taken here: train each task alone, each pair of tasks
together, and all tasks together, with the same model, seeds and a fixed weighting, and compare
each task's test metric.

Cell (i, j) of the matrix is what task i gains from being trained with task j:
``metric_i(trained with {i, j}) − metric_i(trained alone)`` for AUCs and the reverse,
``alone − together``, for RMSE, so **positive always means j helps i**. The diagonal (i with
itself = alone) is 0 by construction; the last column is all tasks together. Like is scored
twice: pooled AUC and like-among-clicks AUC (satisfaction among engaged rows).

Output (``OUT/``): ``runs/``, ``affinity.json``, ``affinity.md``, ``affinity.png`` (heatmap).

Example:
    >>> scores = [{"tasks": ["click"], "seed": 0, "metrics": {"click_auc": 0.80}},
    ...           {"tasks": ["click", "like"], "seed": 0, "metrics": {"click_auc": 0.81}}]
    >>> m = affinity_matrix(scores, ["click", "like"])
    >>> round(m["cells"]["click_auc"]["like"]["mean"], 4), m["cells"]["click_auc"]["click"]["mean"]
    (0.01, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from recsys.config import load_config
from recsys.errors import ConfigError
from recsys.experiments.report import fmt, fmt_mean_std, md_table
from recsys.experiments.runs import (RunSpec, check_buildable, check_overrides, dataset_tasks, execute, mean_std,
                                     parse_list, seed_value)
from recsys.io import atomic_path, atomic_write_json, atomic_write_text

ALL = "all"
_RESERVED = {"dataset": "--dataset", "tasks": "--tasks", "model": "--model", "seed": "--seeds",
             "weighting": "--weighting"}


def metric_rows(tasks: Sequence[str]) -> list[dict[str, Any]]:
    """The matrix rows: each task's main metric (and like-among-clicks AUC for like).

    Returns:
        ``[{"key", "label", "task", "source", "metric", "sign"}]``; ``source``/``metric`` locate
        the value in an evaluation, ``sign`` is +1 when higher is better, −1 when lower is.
    """
    from recsys.data.fields import TASK_KINDS

    rows = []
    for t in tasks:
        if TASK_KINDS[t] == "binary":
            rows.append({"key": f"{t}_auc", "label": f"{t} AUC", "task": t, "source": t, "metric": "auc", "sign": 1})
        else:
            rows.append({"key": f"{t}_rmse", "label": f"{t} RMSE", "task": t, "source": t, "metric": "rmse",
                         "sign": -1})
        if t == "like" and "click" in tasks:
            rows.append({"key": "like_among_clicks_auc", "label": "like-among-clicks AUC", "task": t,
                         "source": "like_among_clicks", "metric": "auc", "sign": 1})
    return rows


def task_subsets(tasks: Sequence[str]) -> list[tuple[str, ...]]:
    """Each task alone, each pair, and all of them (when there are more than two)."""
    subsets = [(t,) for t in tasks] + list(combinations(tasks, 2))
    return subsets + ([tuple(tasks)] if len(tasks) > 2 else [])


def plan_affinity(dataset: str, tasks: Sequence[str] | str, model: str, seeds: Sequence[int] | str, *,
                  weighting: str = "equal", preset: str = "default", overrides: dict[str, Any] | None = None,
                  data_dir: str | Path = "data") -> list[RunSpec]:
    """The runs of an affinity study, every name and option checked (no training).

    Args:
        dataset: prepared data set (a name under ``DATA_DIR/prepared`` or a path).
        tasks: at least two of the data set's tasks.
        model: architecture trained in every run.
        seeds: seeds, each >= 0.
        weighting: strategy combining the tasks of a multi-task run (``equal``: the plain sum).
        preset: config preset the runs start from.
        overrides: further config keys (``--set``).
        data_dir: cache root for data sets given by name.

    Returns:
        Specs tagged ``{"tasks": [...], "seed"}``: every subset of `task_subsets` × every seed.

    Raises:
        ConfigError: fewer than two tasks, an unknown or repeated task, a task the data set lacks,
            an unknown model, weighting, preset or config key, or an empty list.
    """
    from recsys.data.fields import TASK_KINDS
    from recsys.models.registry import MODELS
    from recsys.mtl.registry import WEIGHTINGS

    tasks = parse_list(tasks, "--tasks")
    seeds = parse_list(seeds, "--seeds", convert=seed_value)
    if len(tasks) < 2:
        raise ConfigError(f"--tasks needs at least two tasks to compare, got {tasks}")
    dataset_dir, available, _ = dataset_tasks(dataset, data_dir)
    for t in tasks:
        if t not in TASK_KINDS:
            raise ConfigError(f"--tasks: unknown task {t!r} (known tasks: {', '.join(TASK_KINDS)})")
        if t not in available:
            raise ConfigError(f"--tasks: data set {dataset} has no task {t!r} (its tasks: {', '.join(available)})")
    if model not in MODELS:
        raise ConfigError(f"--model: unknown model {model!r} (known: {', '.join(MODELS)})")
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"--weighting: unknown weighting {weighting!r} (known: {', '.join(WEIGHTINGS)})")
    overrides = dict(overrides or {})
    check_overrides(overrides, _RESERVED)
    if overrides.get("esmm"):
        raise ConfigError("--set esmm=true: ESMM needs click and like together, so tasks cannot be trained alone")
    specs = []
    for subset in task_subsets(tasks):
        for seed in seeds:
            config = load_config(preset, {**overrides, "dataset": dataset, "tasks": list(subset), "model": model,
                                          "weighting": weighting, "seed": seed})
            specs.append(RunSpec(f"{'+'.join(subset)}__seed{seed}", config, {"tasks": list(subset), "seed": seed}))
    check_buildable(specs, dataset_dir)
    return specs


def run_affinity(dataset: str, tasks, model: str, seeds, *, out: str | Path, weighting: str = "equal",
                 preset: str = "default", overrides: dict[str, Any] | None = None, data_dir: str | Path = "data",
                 jobs: int = 1, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Plan, train (resumably) and evaluate an affinity study; write its reports.

    Args:
        dataset, tasks, model, seeds, weighting, preset, overrides, data_dir: as for `plan_affinity`.
        out: the experiment directory; re-running into it skips finished runs.
        jobs: runs trained at once, in worker processes.
        log: progress lines (default: stderr).

    Returns:
        The content of ``affinity.json``: ``{"dataset", "model", "weighting", "tasks", "seeds",
        "matrix": affinity_matrix(...), "scores", "runs"}``.
    """
    specs = plan_affinity(dataset, tasks, model, seeds, weighting=weighting, preset=preset, overrides=overrides,
                          data_dir=data_dir)
    tasks = parse_list(tasks, "--tasks")
    out = Path(out)
    _, _, name = dataset_tasks(dataset, data_dir)
    records = execute(specs, out, data_dir=data_dir, jobs=jobs, log=log)
    rows = metric_rows(tasks)
    scores = [{"tasks": r["tags"]["tasks"], "seed": r["tags"]["seed"],
               "metrics": {row["key"]: r["test"].get(row["source"], {}).get(row["metric"]) for row in rows
                           if row["task"] in r["tags"]["tasks"]}} for r in records]
    report = {"dataset": name, "model": model, "weighting": weighting, "tasks": tasks,
              "seeds": sorted({r["tags"]["seed"] for r in records}), "split": "test",
              "matrix": affinity_matrix(scores, tasks), "scores": scores, "runs": records}
    atomic_write_json(out / "affinity.json", report)
    atomic_write_text(out / "affinity.md", format_affinity(report))
    plot_affinity(report["matrix"], out / "affinity.png",
                  title=f"{name}, {model} + {weighting}: gain of each task from its partner (test)")
    return report


def affinity_matrix(scores: Sequence[dict[str, Any]], tasks: Sequence[str]) -> dict[str, Any]:
    """Build the affinity matrix from per-run scores.

    Args:
        scores: ``[{"tasks": [trained tasks], "seed": s, "metrics": {row key: value}}]``, row keys
            as in `metric_rows` (``click_auc``, ``rating_rmse``, ...).
        tasks: the tasks, in matrix order.

    Returns:
        ``{"rows": metric_rows(tasks), "columns": [*tasks, "all"], "cells": {row key: {column:
        {"mean", "std", "n"}}}, "alone": {row key: {"mean", "std", "n"}}}``: cell = mean over the
        seeds that have both runs of sign · (together − alone), sign −1 for RMSE (positive = helps).
    """
    tasks = list(tasks)
    by_run: dict[tuple[frozenset, Any], dict[str, float]] = {
        (frozenset(s["tasks"]), s["seed"]): s["metrics"] for s in scores}
    seeds = sorted({s["seed"] for s in scores}, key=str)
    rows = metric_rows(tasks)
    columns = [*tasks, ALL]
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    alone: dict[str, dict[str, Any]] = {}
    for row in rows:
        i, key = row["task"], row["key"]
        alone_runs = {seed: by_run.get((frozenset([i]), seed), {}).get(key) for seed in seeds}
        alone[key] = mean_std(alone_runs.values())
        cells[key] = {}
        for j in columns:
            together = frozenset(tasks) if j == ALL else frozenset([i, j])
            diffs = []
            for seed in seeds:
                a, b = alone_runs[seed], by_run.get((together, seed), {}).get(key)
                if a is not None and b is not None:
                    diffs.append(row["sign"] * (b - a))
            cells[key][j] = mean_std(diffs)
    return {"rows": rows, "columns": columns, "cells": cells, "alone": alone}


def format_affinity(report: dict[str, Any]) -> str:
    """``affinity.md``: the matrix, the alone scores, and the best / worst partner of each task."""
    m = report["matrix"]
    header = ["metric (task i)", "alone", *[f"with {c}" if c != ALL else "all tasks" for c in m["columns"]]]
    body = [[row["label"], fmt_mean_std(m["alone"][row["key"]]),
             *[_cell(m["cells"][row["key"]][c]) for c in m["columns"]]] for row in m["rows"]]
    lines = [f"# Task affinity on {report['dataset']} ({report['model']} + {report['weighting']}, test split)", "",
             f"Cell (i, j) = metric of task i trained with task j − metric of task i trained alone "
             f"(for RMSE: alone − together), so **positive = j helps i**; mean ± std over seeds "
             f"{report['seeds']}. The diagonal is 0 by construction; the last column trains all tasks together.",
             "", md_table(header, body), ""]
    notes = []
    for row in m["rows"]:
        partners = [(c, m["cells"][row["key"]][c]) for c in m["columns"] if c not in (row["task"], ALL)]
        partners = [(c, s) for c, s in partners if s["mean"] is not None]
        if not partners:
            continue
        best = max(partners, key=lambda p: p[1]["mean"])
        worst = min(partners, key=lambda p: p[1]["mean"])
        note = f"{row['label']}: best partner {best[0]} ({best[1]['mean']:+.4f}"
        note += f" ± {fmt(best[1]['std'])})" if best[1]["std"] is not None else ")"
        if worst[0] != best[0]:
            note += f", worst {worst[0]} ({worst[1]['mean']:+.4f})"
        everything = m["cells"][row["key"]][ALL]["mean"]
        if everything is not None:
            note += f"; all tasks {everything:+.4f}"
        notes.append(f"- {note}.")
    return "\n".join(lines + notes + [""])


def _cell(stats: dict[str, Any]) -> str:
    if stats["mean"] is None:
        return "–"
    return f"{stats['mean']:+.4f}" + (f" ± {stats['std']:.4f}" if stats["std"] is not None else "")


def plot_affinity(matrix: dict[str, Any], path: str | Path, *, title: str = "") -> None:
    """Heatmap of the matrix (red = hurts, blue = helps; colour scaled per row, values printed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows, columns = matrix["rows"], matrix["columns"]
    values = np.array([[matrix["cells"][r["key"]][c]["mean"] if matrix["cells"][r["key"]][c]["mean"] is not None
                        else np.nan for c in columns] for r in rows], dtype=float)
    scale = np.nanmax(np.abs(values), axis=1, keepdims=True) if values.size else np.ones((0, 1))
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    fig, ax = plt.subplots(figsize=(1.6 * len(columns) + 2.5, 0.8 * len(rows) + 1.6), dpi=120)
    shade = values / scale
    ax.imshow(shade, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    for y, r in enumerate(rows):
        alone = matrix["alone"][r["key"]]["mean"]
        for x, c in enumerate(columns):
            s = matrix["cells"][r["key"]][c]
            if c == r["task"]:
                text = "alone\n" + fmt(alone)
            elif s["mean"] is None:
                text = "–"
            else:
                text = f"{s['mean']:+.4f}" + (f"\n±{s['std']:.4f}" if s["std"] is not None else "")
            dark = np.isfinite(shade[y, x]) and abs(shade[y, x]) > 0.6
            ax.text(x, y, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(columns)), [f"with {c}" if c != ALL else "all tasks" for c in columns])
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows])
    ax.set_title(title + "\n(blue helps, red hurts; colour scaled per row)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
