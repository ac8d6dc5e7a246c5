"""One experiment run: train (or skip, or resume), evaluate on the test split, summarise.

Every experiment (the weighting grid, the task-affinity study) is a list of `RunSpec`s, each
trained into its own directory under ``OUT/runs/``. A run whose directory already holds a
published model (``manifest.json``) is not trained again, and a run killed half-way resumes
from its last checkpoint, so a killed experiment re-run with the same options continues where
it stopped. Runs go one after another, or over ``jobs`` worker processes.

A run may train a subset of the data set's tasks; evaluation always reads the full data set's
labels, so a model of ``like`` alone is still scored on like among clicked rows.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.config import TrainConfig, from_dict
from recsys.errors import ConfigError
from recsys.experiments.diagnostics import summarise_diagnostics
from recsys.io import atomic_write_json
from recsys.train import resolve_dataset, train

#: Per-run record written beside the run: what the experiment needs without retraining.
RECORD = "experiment.json"

#: Config keys that do not change what a run computes; a finished run is reused across them.
_NOT_RESULTS = ("threads", "device", "checkpoint_every")


@dataclass(frozen=True)
class RunSpec:
    """One training run of an experiment.

    Attributes:
        name: directory name under ``OUT/runs``.
        config: the run's full training config (its dataset is the original data set).
        tags: what the experiment groups by, e.g. ``{"model": "mmoe", "weighting": "dwa"}``.
    """

    name: str
    config: TrainConfig
    tags: dict[str, Any] = field(default_factory=dict)


def parse_list(value: str | Sequence[str], option: str, *, convert: Callable[[str], Any] = str) -> list[Any]:
    """``"a,b, c"`` → ``["a", "b", "c"]``; empty or repeated items are a `ConfigError` naming `option`."""
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [str(i).strip() for i in items]
    if not items or any(not i for i in items):
        raise ConfigError(f"{option} expects a comma-separated list with no empty items, got {value!r}")
    out = []
    for item in items:
        try:
            out.append(convert(item))
        except ValueError as exc:
            raise ConfigError(f"{option}: {item!r} is not valid ({exc})") from None
    duplicates = sorted({str(i) for i in out if out.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{option} lists {duplicates} more than once")
    return out


def seed_value(text: str) -> int:
    seed = int(text)
    if seed < 0:
        raise ValueError("a seed must be >= 0")
    return seed


def mean_std(values: Iterable[float | None]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof = 1) of the finite values.

    Returns:
        ``{"mean", "std", "n"}``; ``mean`` is None without values, ``std`` None below two.
    """
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if not n:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def check_overrides(overrides: dict[str, Any], reserved: dict[str, str]) -> None:
    """Refuse ``--set`` keys an experiment sets itself (``reserved``: key -> the option to use)."""
    for key, option in reserved.items():
        if key in overrides:
            raise ConfigError(f"--set {key}=... is set by the experiment; use {option} instead")


def dataset_tasks(dataset: str, data_dir: str | Path) -> tuple[Path, tuple[str, ...], str]:
    """The prepared data set's directory, its tasks and its name (``ConfigError`` if not prepared)."""
    path = resolve_dataset(dataset, data_dir)
    schema = json.loads((path / "schema.json").read_text())
    return path, tuple(schema["tasks"]), str(schema.get("dataset") or path.name)


def check_buildable(specs: Sequence[RunSpec], dataset_dir: Path) -> None:
    """Build each distinct model and weighting once, so a bad option fails before any training."""
    from recsys.data.tensors import load_schema
    from recsys.models.registry import build_model
    from recsys.mtl.registry import build_weighting

    schema = load_schema(dataset_dir)
    seen: set[str] = set()
    for spec in specs:
        c = spec.config
        tasks = tuple(c.tasks) or schema.tasks
        key = json.dumps([c.model, c.model_options, c.weighting, c.weighting_options, tasks], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        for task in tasks:
            if task not in schema.tasks:
                raise ConfigError(f"task {task!r} is not in data set {dataset_dir} (its tasks: "
                                  f"{', '.join(schema.tasks)})")
        build_model(c.model, schema, tasks, **c.model_options)
        build_weighting(c.weighting, tasks, **c.weighting_options)


def evaluate_tasks(run_dir: Path, *, split: str = "test") -> dict[str, Any]:
    """Test metrics of a published run against all of its data set's labels (so a model of
    ``like`` alone is still scored on like among clicked rows): `recsys.evaluate.task_metrics`."""
    from recsys.evaluate import evaluate_run

    return evaluate_run(run_dir, split=split, baselines=False)["model"]


def baseline_metrics(dataset_dir: Path, *, split: str = "test") -> dict[str, Any]:
    """Popularity and random scores of the data set's tasks on `split` (``recsys.evaluate``)."""
    from recsys.evaluate import evaluate_baselines

    return evaluate_baselines(dataset_dir, split=split)


def execute(specs: Sequence[RunSpec], out: Path, *, data_dir: str | Path = "data", jobs: int = 1,
            log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Train, evaluate and summarise every run not done yet; return every run's record.

    Args:
        specs: the runs, in report order.
        out: the experiment directory (runs go to ``out/runs/NAME``).
        data_dir: cache root used to resolve data sets by name.
        jobs: worker processes (1 = in this process).
        log: progress lines.

    Returns:
        One record per spec, in order: ``{"name", "tags", "config", "train", "test", "diagnostics"}``.

    Raises:
        ConfigError: a run directory holds a run with another config.
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for spec in specs:
        run_dir = out / "runs" / spec.name
        _check_same_config(run_dir, spec)
        if (run_dir / RECORD).exists() and (run_dir / "manifest.json").exists():
            records[spec.name] = {**json.loads((run_dir / RECORD).read_text()), "tags": spec.tags}
        else:
            todo.append(spec)
    if records:
        log(f"{len(records)} of {len(specs)} runs already done in {out / 'runs'}; skipping them")
    started, durations = time.perf_counter(), []

    def done(record: dict[str, Any]) -> None:
        records[record["name"]] = record
        seconds = record["train"].get("seconds")
        durations.append(seconds or 0.0)
        left = len(todo) - len(durations)
        eta = sum(durations) / len(durations) * left / max(1, jobs)
        log(f"[{len(durations)}/{len(todo)}] {record['name']}: {_headline(record['test'])}"
            f" (train {seconds or 0:.0f}s; {time.perf_counter() - started:.0f}s so far, ~{eta:.0f}s left)")

    if jobs <= 1 or len(todo) <= 1:
        for spec in todo:
            done(run_one(spec, out, data_dir=data_dir, log=log))
    else:
        import multiprocessing

        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_worker, spec, out, str(data_dir), threads) for spec in todo]
            try:
                for future in as_completed(futures):
                    done(future.result())
            except BaseException:  # do not start the queued runs; the running ones finish (resumable)
                for future in futures:
                    future.cancel()
                raise
    return [records[s.name] for s in specs]


def run_one(spec: RunSpec, out: Path, *, data_dir: str | Path = "data",
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (resuming a partial run, skipping a published one), evaluate and summarise one run."""
    log = log or (lambda m: None)
    run_dir = out / "runs" / spec.name
    config = spec.config
    train_info: dict[str, Any] = {"seconds": None}
    if not (run_dir / "manifest.json").exists():
        result = train(config, run_dir, data_dir=data_dir, resume=True,
                       log=lambda m: log(f"  {spec.name}: {m}") if "valid score" in m or "resum" in m else None)
        train_info = {"seconds": result.seconds, "steps": result.steps, "epochs": result.epochs,
                      "best_epoch": result.best_epoch, "stopped_early": result.stopped_early}
    record = {
        "name": spec.name,
        "tags": spec.tags,
        "config": spec.config.to_json(),
        "train": train_info,
        "test": evaluate_tasks(run_dir),
        "diagnostics": summarise_diagnostics(run_dir),
    }
    atomic_write_json(run_dir / RECORD, record)
    return record


def _worker(spec: RunSpec, out: Path, data_dir: str, threads: int) -> dict[str, Any]:
    import torch

    if not spec.config.threads:
        torch.set_num_threads(threads)
    return run_one(spec, out, data_dir=data_dir, log=lambda m: print(m, file=sys.stderr, flush=True))


def _check_same_config(run_dir: Path, spec: RunSpec) -> None:
    saved = run_dir / RECORD
    if not saved.exists():
        return
    old = from_dict(json.loads(saved.read_text())["config"]).to_json()
    new = spec.config.to_json()
    diff = sorted(k for k in new if k not in _NOT_RESULTS and old.get(k) != new[k])
    if diff:
        raise ConfigError(f"{run_dir} holds a run with other values of {diff} "
                              f"(e.g. {diff[0]}={old.get(diff[0])!r}, now {new[diff[0]]!r}); "
                              "use another --out or the options it was run with")


def _headline(test: dict[str, Any]) -> str:
    parts = []
    for task, metric in (("click", "auc"), ("like_among_clicks", "auc"), ("like", "auc"), ("rating", "rmse")):
        value = test.get(task, {}).get(metric)
        if value is not None:
            parts.append(f"{task} {metric} {value:.4f}")
    return ", ".join(parts)
