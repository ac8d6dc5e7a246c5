"""The cold-start protocol: which users, which rows, and scoring them with an adapter.

New users (``coldstart.parquet``, users the ranker never saw) are split, seeded, into
validation users (the adapters' `fit` selects and early-stops on them) and test users (measured),
as `recsys.data.splits.split_cold_users` does. Each test user is measured on a FIXED query set:
their rows after their first max(shots) events. For every K in shots the support set is the
user's first K events, so every K and every method is scored on the same users and the same
query rows, and a curve over K shows the effect of K alone. Users with no event after max(shots)
are left out and counted.

Adaptation runs one user at a time with one torch thread, timed with `time.perf_counter`
(CS330's test condition: a new user arrives alone).

Shapes: U test users, Q query rows (all users), S support rows, W columns of x, T tasks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.data.episodes import EpisodeSampler
from recsys.data.splits import split_cold_users
from recsys.data.tensors import TensorData, load_schema, load_split
from recsys.errors import CheckpointError, ConfigError


@dataclass
class LoadedRun:
    """A published ranker with what the cold-start evaluation needs to know about it."""

    ranker: torch.nn.Module
    tasks: tuple[str, ...]
    esmm: bool
    dataset: Path
    run_dir: Path
    weights_sha: str = ""   # SHA-256 of model.safetensors: what a saved fitted adapter belongs to


def load_run(run_dir: str | Path, dataset: str | Path | None = None, *, data_dir: str | Path = "data",
             device: torch.device | str = "cpu") -> LoadedRun:
    """Load the trained ranker of `run_dir` (hashes verified) and check `dataset` agrees with it.

    Args:
        run_dir: a run directory written by `recsys train`.
        dataset: optional prepared data set (a name under ``DATA_DIR/prepared`` or a path); it
            must be the one the run was trained on (the same directory, or a copy with the same
            ``schema.json`` and ``summary.json``).
        data_dir: cache root used to resolve a data set name.
        device: where the ranker (and so every adapter around it) runs.

    Raises:
        CheckpointError: no published model in `run_dir`, or its data set is gone.
        ConfigError: `dataset` is not the run's data set.
    """
    from recsys.checkpoint import load_published
    from recsys.models.registry import build_from_spec

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; train one with `recsys train --out {run_dir}`")
    manifest, state = load_published(run_dir)
    trained_on = Path(manifest.get("dataset", ""))
    path = trained_on
    if dataset is not None:
        from recsys.train import resolve_dataset

        path = resolve_dataset(str(dataset), data_dir).resolve()
        if path != trained_on.resolve() and not _same_data(path, trained_on, run_dir):
            raise ConfigError(f"--dataset {dataset} ({path}) is not the data set run {run_dir} was trained on "
                              f"({trained_on}); drop --dataset or pass that one")
    if not (path / "schema.json").exists():
        raise CheckpointError(f"{run_dir}: its data set {path} is gone; prepare it again or pass --dataset")
    ranker = build_from_spec(manifest["model"], load_schema(path))
    ranker.load_state_dict(state)
    ranker.to(device).eval()
    return LoadedRun(ranker, tuple(manifest["tasks"]), bool(manifest.get("esmm", False)), path, run_dir,
                     manifest["files"]["model.safetensors"])


def _same_data(path: Path, trained_on: Path, run_dir: Path) -> bool:
    """A copy of the run's data: same summary (file hashes) when the original is there, else same schema."""
    def text(p: Path) -> str | None:
        return p.read_text() if p.exists() else None

    if (trained_on / "summary.json").exists():
        a, b = text(path / "summary.json"), text(trained_on / "summary.json")
        return a is not None and json.loads(a).get("files") == json.loads(b).get("files")
    return text(path / "schema.json") == text(run_dir / "schema.json")


@dataclass
class ColdStartSplit:
    """Episode samplers of the protocol: warm users' training rows, validation and test new users."""

    train: EpisodeSampler
    valid: EpisodeSampler
    test: EpisodeSampler
    n_cold: int


def cold_start_split(dataset: str | Path, *, seed: int = 0, valid_frac: float = 1 / 3) -> ColdStartSplit:
    """Read a prepared data set's training and cold-start rows and split the new users."""
    cold = load_split(dataset, "coldstart")
    users = torch.unique(cold.user).numpy()
    if len(users) < 2:
        raise ConfigError(f"{dataset}: {len(users)} cold-start user(s); need at least 2 (prepare with a larger "
                          "--cold-frac)")
    valid_ids, test_ids = split_cold_users(users, valid_frac=valid_frac, seed=seed)

    def only(ids: np.ndarray) -> EpisodeSampler:
        return EpisodeSampler(cold.subset(torch.from_numpy(np.isin(cold.user.numpy(), ids))))

    return ColdStartSplit(EpisodeSampler(load_split(dataset, "train")), only(valid_ids), only(test_ids), len(users))


@dataclass
class FixedQueries:
    """The measured users and their query rows, the same for every K and every method.

    Attributes:
        sampler: the test users' episodes.
        users: [U] positions (in ``sampler.users``) of the measured users.
        shots: the K values, ascending.
        query_rows: [Q] rows of ``sampler.data``: each measured user's rows after max(shots) events,
            users in order; ``query_user`` [Q] the user index 0..U-1 of each.
        query_start: [U + 1] offsets of each user's block in `query_rows`.
        excluded: test users left out (no event after max(shots)).
        support_sizes: K -> [all test users] rows of each user's first K events.
    """

    sampler: EpisodeSampler
    users: torch.Tensor
    shots: tuple[int, ...]
    query_rows: torch.Tensor
    query_user: np.ndarray
    query_start: np.ndarray
    excluded: int
    support_sizes: dict[int, torch.Tensor]

    def support_rows(self, i: int, k: int) -> torch.Tensor:
        """Rows of the i-th measured user's first k events."""
        pos = int(self.users[i])
        start = int(self.sampler.start[pos])
        return torch.arange(start, start + int(self.support_sizes[k][pos]))

    def query(self, i: int) -> torch.Tensor:
        """Fixed query rows of the i-th measured user."""
        return self.query_rows[int(self.query_start[i]):int(self.query_start[i + 1])]


def fixed_queries(sampler: EpisodeSampler, shots: tuple[int, ...]) -> FixedQueries:
    """The measured users (more than max(shots) events) and their fixed query rows."""
    shots = tuple(sorted(set(shots)))
    k_max = shots[-1]
    users = sampler.eligible(k_max)
    if len(users) == 0:
        most = int(sampler.events.max()) if len(sampler) else 0
        raise ConfigError(f"no test user has an event after the first {k_max} (the most any has is {most}); "
                          "lower the largest --shots value")
    sizes = {k: sampler.support_size(k) for k in shots}
    first = sampler.start[users] + sizes[k_max][users]
    count = sampler.rows[users] - sizes[k_max][users]
    query_start = np.concatenate([[0], np.cumsum(count.numpy())])
    offset = torch.from_numpy(query_start[:-1])                     # each user's block in query_rows
    query_rows = torch.repeat_interleave(first - offset, count) + torch.arange(int(count.sum()))
    return FixedQueries(sampler, users, shots, query_rows, np.repeat(np.arange(len(users)), count.numpy()),
                        query_start, len(sampler) - len(users), sizes)


@dataclass
class MethodScores:
    """One method's raw outputs on the fixed query rows at one K."""

    outputs: dict[str, np.ndarray]   # task -> [Q] raw scores
    adapt_ms: np.ndarray             # [U] adaptation time of each user
    score_ms: np.ndarray             # [U] time to score the user's query rows
    fallbacks: int


def score_method(adapter, queries: FixedQueries, k: int) -> MethodScores:
    """Adapt to each measured user's first `k` events and score their query rows.

    Args:
        adapter: a fitted `recsys.meta.base.Adapter`.
        queries: the fixed users and query rows.
        k: support events per user.

    Returns:
        The raw outputs (in `queries.query_rows` order), timings and the adapter's fallbacks
        during this pass (the growth of its ``fallbacks`` counter, 0 if it keeps none).
    """
    data = queries.sampler.data
    cols = task_columns(data, tuple(adapter.tasks))
    device = torch.device(getattr(adapter, "device", "cpu"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)  # honest GPU timings
    n_users, n_rows = len(queries.users), len(queries.query_rows)
    outputs: dict[str, np.ndarray] = {}
    adapt_ms, score_ms = np.zeros(n_users), np.zeros(n_users)
    before = int(getattr(adapter, "fallbacks", 0) or 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i in range(n_users):
            support = queries.support_rows(i, k)
            sx, sy, qx = data.x[support], data.y[support][:, cols], data.x[queries.query(i)]
            sx, sy, qx = sx.to(device), sy.to(device), qx.to(device)
            t0 = time.perf_counter()
            scorer = adapter.adapt(sx, sy)
            sync()
            t1 = time.perf_counter()
            with torch.no_grad():
                out = scorer(qx)
            sync()
            t2 = time.perf_counter()
            adapt_ms[i], score_ms[i] = 1e3 * (t1 - t0), 1e3 * (t2 - t1)
            lo, hi = int(queries.query_start[i]), int(queries.query_start[i + 1])
            for task, value in out.items():
                if task not in outputs:
                    outputs[task] = np.full(n_rows, np.nan, dtype=np.float64)
                outputs[task][lo:hi] = value.detach().double().cpu().numpy().reshape(-1)
    finally:
        torch.set_num_threads(threads)
    fallbacks = int(getattr(adapter, "fallbacks", 0) or 0) - before
    return MethodScores(outputs, adapt_ms, score_ms, fallbacks)


def task_columns(data: TensorData, tasks: tuple[str, ...]) -> torch.Tensor:
    """Columns of ``data.y`` (schema order) holding `tasks` (the ranker's order, maybe a subset)."""
    missing = [t for t in tasks if t not in data.schema.tasks]
    if missing:
        raise ConfigError(f"the data set has no labels for task(s) {missing} of the ranker "
                          f"(it has {list(data.schema.tasks)})")
    return torch.tensor([data.schema.tasks.index(t) for t in tasks], dtype=torch.long)


def ranker_outputs(ranker: torch.nn.Module, x: torch.Tensor, *, batch_size: int = 16384) -> dict[str, np.ndarray]:
    """The ranker's own raw outputs (evaluation mode, no position) for rows `x` [N, W]."""
    chunks: dict[str, list[np.ndarray]] = {}
    device = next(ranker.parameters()).device
    was = ranker.training
    ranker.eval()
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            for task, value in ranker(x[start:start + batch_size].to(device)).items():
                chunks.setdefault(task, []).append(value.double().cpu().numpy())
    ranker.train(was)
    return {t: np.concatenate(v) if v else np.zeros(0) for t, v in chunks.items()}


def predictions(outputs: dict[str, np.ndarray], tasks: tuple[str, ...], esmm: bool) -> dict[str, np.ndarray]:
    """Raw outputs → probabilities / values (`recsys.mtl.losses.predict_proba`), plus
    ``like_given_click`` = p(like | click) = sigmoid(like logit) under ESMM."""
    from recsys.mtl.losses import predict_proba

    raw = {t: torch.from_numpy(np.asarray(outputs[t], dtype=np.float64)) for t in tasks}
    pred = {t: v.numpy() for t, v in predict_proba(raw, tasks, esmm).items()}
    if esmm and "like" in tasks:
        pred["like_given_click"] = torch.sigmoid(raw["like"]).numpy()
    return pred


def fit_adapter(name: str, run: LoadedRun, split: ColdStartSplit, *, log: Callable[[str], None],
                options: dict[str, Any] | None = None, seed: int = 0, save_dir: Path | None = None,
                reuse: bool = False) -> tuple[Any, float, bool]:
    """Build adapter `name` around the run's ranker and fit it (torch seeded with `seed`).

    Args:
        name: a registered adapter.
        run: the loaded run.
        split: the protocol's episodes (`fit` gets ``split.train`` and ``split.valid``).
        log: progress lines.
        options: adapter options.
        seed: torch seed set before building and fitting.
        save_dir: if given, the fitted adapter is saved to ``save_dir/name`` (`Adapter.save`) with
            ``fit.json``: the ranker's weights hash, seed, options and fit time.
        reuse: load the adapter saved there instead of fitting, when its ``fit.json`` matches
            this ranker, seed and options with the defaults filled in (anything else is refitted,
            with a log line).

    Returns:
        (fitted adapter in evaluation mode, fit seconds, whether it was reused).
    """
    from recsys.io import atomic_write_json
    from recsys.meta.registry import ADAPTERS, build_adapter, load_adapter

    # the options with the adapter's defaults filled in: a saved fit made under other defaults is refitted
    resolved = {**getattr(ADAPTERS.get(name), "defaults", {}), **(options or {})}
    key = json.loads(json.dumps({"adapter": name, "weights": run.weights_sha, "seed": seed,
                                 "options": resolved}, default=list))
    where = Path(save_dir) / name if save_dir is not None else None
    run_device = next(run.ranker.parameters()).device  # the adapter's own parameters go there too
    if reuse and where is not None and (where / "fit.json").exists():
        saved = json.loads((where / "fit.json").read_text())
        if saved.get("key") == key:
            try:
                adapter = load_adapter(where, run.ranker).to(run_device)
            except CheckpointError as exc:
                log(f"coldstart: cannot reuse {where} ({exc}); fitting {name} again")
            else:
                adapter.eval()
                return adapter, float(saved.get("seconds", 0.0)), True
        else:
            log(f"coldstart: {where} was fitted for another ranker, seed or options; fitting {name} again")
    torch.manual_seed(seed)
    adapter = build_adapter(name, run.ranker, esmm=run.esmm, **(options or {})).to(run_device)
    t0 = time.perf_counter()
    adapter.fit(split.train, split.valid, log=log)
    seconds = time.perf_counter() - t0
    adapter.eval()
    if where is not None:
        adapter.save(where)
        atomic_write_json(where / "fit.json", {"key": key, "seconds": seconds})
    return adapter, seconds, False


def truth_of(data: TensorData, rows: torch.Tensor) -> dict[str, np.ndarray]:
    """Simulator ground truth (``true_*``) of `rows` as numpy; empty for MovieLens."""
    return {k: v[rows].double().numpy() for k, v in data.truth.items()}
