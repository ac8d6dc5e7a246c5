"""The same-user warm reference ("oracle"): the ranker trained as if the new users were warm.

`recsys.coldstart.harness.warm_reference` measures the ranker on the *warm* users' test rows:
other people, on other events. A gap between it and `none` mixes what the model knows about a
user with who the users are and how hard their rows are; on MovieLens-100k the new users'
later ratings are easier to rank than the warm users' test ratings (like AUC: none 0.894 >
warm 0.885), so "the share of the gap closed" had no gap to close.

The oracle removes both differences. The ranker is trained again, with the run's own config
(same seed, epochs and early stopping on the same validation rows), on the training rows plus
each measured new user's support pool (their first max(shots) events) under a user id of
their own, as a warm user's history is trained on. It is then scored on exactly the query rows
every adapter is scored on. So `oracle − none` is the whole value of knowing the user's first
max(shots) events through training, paired on the same users and rows, and an adapter at K
that reaches a share of it has closed that share of the gap.

    oracle_scores(run, queries, out)  -> MethodScores of the retrained ranker on the query rows

Costs one training run of the ranker (the main job's: about 80 s on MovieLens-100k). A
finished oracle in `out` trained for the same run, users and shots is reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.coldstart.protocol import FixedQueries, LoadedRun, MethodScores, ranker_outputs
from recsys.errors import ConfigError
from recsys.io import atomic_write_json

USER_FIELD, USER_VOCAB = "f_user_id", "user_id"


def oracle_dataset(dataset: Path, users: np.ndarray, k_max: int, out: Path) -> dict[int, int]:
    """Write `out`: a copy of prepared `dataset` whose training rows also hold the support pools
    (first `k_max` events) of `users` (raw ids of new users), each under a new ``f_user_id``
    appended to the vocabulary.

    Returns:
        raw user id -> its new ``f_user_id``.
    """
    schema = json.loads((dataset / "schema.json").read_text())
    field = next((f for f in schema["fields"] if f["name"] == USER_FIELD), None)
    if field is None:
        raise ConfigError(f"{dataset}: no {USER_FIELD} field, so there is no user to make warm for the oracle")
    users = np.sort(np.asarray(users, dtype=np.int64))
    new_id = {int(u): field["size"] + j for j, u in enumerate(users)}
    cold = pl.read_parquet(dataset / "coldstart.parquet").filter(pl.col("user_id").is_in(users.tolist()))
    support = (cold.with_columns((pl.col("event") - pl.col("event").min().over("user_id")).alias("_rank"))
               .filter(pl.col("_rank") < k_max).drop("_rank")
               .with_columns(pl.col("user_id").replace_strict(new_id, return_dtype=pl.Int64).alias(USER_FIELD)))
    train = pl.read_parquet(dataset / "train.parquet")
    support = support.select(train.columns).cast(dict(train.schema))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pl.concat([train, support]).write_parquet(out / "train.parquet")
    for name in ("valid.parquet", "test.parquet", "coldstart.parquet", "items.parquet", "users.parquet"):
        if (dataset / name).exists():
            shutil.copyfile(dataset / name, out / name)
    field["size"] += len(users)
    atomic_write_json(out / "schema.json", schema)
    vocab_path = dataset / "vocab.json"
    if vocab_path.exists():
        vocab = json.loads(vocab_path.read_text())
        vocab[USER_VOCAB] = [*vocab.get(USER_VOCAB, []), *users.tolist()]
        atomic_write_json(out / "vocab.json", vocab)
    return new_id


def _key(run: LoadedRun, users: np.ndarray, k_max: int) -> str:
    text = json.dumps({"weights": run.weights_sha, "users": sorted(int(u) for u in users), "k_max": k_max})
    return hashlib.sha256(text.encode()).hexdigest()


def oracle_scores(run: LoadedRun, queries: FixedQueries, out: Path, *,
                  log: Callable[[str], None] = print) -> tuple[MethodScores, dict[str, Any]]:
    """Train (or reuse) the oracle ranker in `out` and score the measured users' query rows.

    Returns:
        (the oracle's raw outputs on ``queries.query_rows`` as `MethodScores` (no adaptation:
        zero times), a summary: users made warm, support rows added, training seconds, its best
        validation metrics).
    """
    from recsys.checkpoint import load_published
    from recsys.config import from_dict
    from recsys.data.tensors import load_schema
    from recsys.models.registry import build_from_spec
    from recsys.train import train

    data = queries.sampler.data
    device = next(run.ranker.parameters()).device
    k_max = queries.shots[-1]
    users = queries.sampler.users[queries.users].numpy()
    key = _key(run, users, k_max)
    ranker_dir, data_dir, done = out / "ranker", out / "data", out / "oracle.json"
    summary = json.loads(done.read_text()) if done.exists() else None
    if summary is None or summary.get("key") != key or not (ranker_dir / "manifest.json").exists():
        log(f"coldstart: oracle: training the ranker again with {len(users)} new users' first {k_max} events")
        new_id = oracle_dataset(run.dataset, users, k_max, data_dir)
        config = json.loads((run.run_dir / "config.json").read_text())
        config.update(dataset=str(data_dir.resolve()), device=device.type)
        if ranker_dir.exists():
            shutil.rmtree(ranker_dir)
        t0 = time.perf_counter()
        result = train(from_dict(config), ranker_dir, log=lambda m: log(f"coldstart: oracle: {m}"))
        added = int(sum(int(queries.support_sizes[k_max][p]) for p in queries.users))
        summary = {"key": key, "users": len(users), "support_rows_added": added, "k_max": k_max,
                   "seconds": time.perf_counter() - t0, "best_epoch": result.best_epoch, "valid": result.valid,
                   "new_ids": {str(u): i for u, i in new_id.items()}}
        atomic_write_json(done, summary)  # written last: the mark of a finished oracle
    manifest, state = load_published(ranker_dir)
    ranker = build_from_spec(manifest["model"], load_schema(data_dir))
    ranker.load_state_dict(state)
    ranker.to(device).eval()
    x = data.x[queries.query_rows].clone()
    ids = np.array([summary["new_ids"][str(int(u))] for u in users], dtype=np.int64)
    x[:, data.schema.slice(USER_FIELD)] = torch.from_numpy(ids[queries.query_user]).unsqueeze(1)
    outputs = ranker_outputs(ranker, x)
    zeros = np.zeros(len(queries.users))
    info = {k: v for k, v in summary.items() if k not in ("key", "new_ids")}
    return MethodScores(outputs, zeros, zeros.copy(), 0), info
