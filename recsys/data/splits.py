"""Cold-start users and the per-user temporal split.

Protocol (the one the whole project measures on):
  1. A seeded fraction of users is set apart as *new* users. They appear in no train, valid or
     test row and in no statistic the model learns from (vocabularies, popularity); their
     impressions, in time order, become cold-start episodes (support = first K events).
  2. Each remaining (warm) user's events, in time order, go 80% / 10% / 10% to train / valid /
     test, with at least one event in each where the user has 3 or more. Rows of one event
     (a positive and its negatives, or one slate) stay together.

A global time cut would put most test rows on users the model never saw, because MovieLens
users arrive over time; new users are the cold-start protocol's job, measured separately.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.errors import ConfigError

TRAIN, VALID, TEST, COLD = "train", "valid", "test", "coldstart"


def pick_cold_users(user_ids: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """A seeded subset of `user_ids` (sorted, unique) of size round(frac * n).

    Args:
        user_ids: [U] user ids.
        frac: fraction in [0, 1).
        seed: random seed.

    Returns:
        [C] sorted ids of the cold-start users.
    """
    if not 0.0 <= frac < 1.0:
        raise ConfigError(f"cold-start fraction must be in [0, 1), got {frac}")
    ids = np.unique(np.asarray(user_ids))
    n_cold = int(round(frac * len(ids)))
    rng = np.random.default_rng([seed, 0xC01D])
    return np.sort(rng.choice(ids, size=n_cold, replace=False)) if n_cold else ids[:0]


def split_sizes(n: np.ndarray, valid_frac: float = 0.1, test_frac: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Events per user in valid and test: floor(frac * n), at least 1 each when n >= 3.

    Args:
        n: [U] number of events per user.

    Returns:
        ([U] valid counts, [U] test counts); train gets the rest.
    """
    n = np.asarray(n, dtype=np.int64)
    enough = n >= 3
    n_valid = np.where(enough, np.maximum(1, np.floor(valid_frac * n)), 0).astype(np.int64)
    n_test = np.where(enough, np.maximum(1, np.floor(test_frac * n)), 0).astype(np.int64)
    return n_valid, n_test


def assign_splits(events: pl.DataFrame, cold_users: np.ndarray, *, valid_frac: float = 0.1,
                  test_frac: float = 0.1) -> pl.DataFrame:
    """Add a ``split`` column to a frame of events.

    Args:
        events: one row per event with ``user_id`` and ``event`` (0-based rank of the event in its
            user's time order, as made by the framing step).
        cold_users: ids of users set apart for cold start.

    Returns:
        `events` with ``split`` in {train, valid, test, coldstart}.
    """
    counts = events.group_by("user_id").agg(pl.len().alias("_n"))
    n_valid, n_test = split_sizes(counts.get_column("_n").to_numpy(), valid_frac, test_frac)
    counts = counts.with_columns(pl.Series("_nv", n_valid), pl.Series("_nt", n_test))
    out = events.join(counts, on="user_id", how="left").with_columns(
        pl.when(pl.col("user_id").is_in(pl.Series(cold_users).implode()))
        .then(pl.lit(COLD))
        .when(pl.col("event") >= pl.col("_n") - pl.col("_nt"))
        .then(pl.lit(TEST))
        .when(pl.col("event") >= pl.col("_n") - pl.col("_nt") - pl.col("_nv"))
        .then(pl.lit(VALID))
        .otherwise(pl.lit(TRAIN))
        .alias("split")
    )
    return out.drop("_n", "_nv", "_nt")


def split_cold_users(user_ids: np.ndarray, *, valid_frac: float = 1 / 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cold-start users → (validation users, test users), seeded.

    Validation new users select the adapters' hyper-parameters (inner learning rates, fine-tune
    steps and layers) and early-stop meta-training; test new users are measured. Both are new to
    the ranker, so a tuned baseline is tuned on the same kind of user it is tested on.

    Args:
        user_ids: [C] ids of the cold-start users.
        valid_frac: fraction for validation, in (0, 1).

    Returns:
        (sorted validation ids, sorted test ids).
    """
    if not 0.0 < valid_frac < 1.0:
        raise ConfigError(f"validation fraction of cold-start users must be in (0, 1), got {valid_frac}")
    ids = np.unique(np.asarray(user_ids))
    rng = np.random.default_rng([seed, 0x5EED])
    pick = rng.permutation(len(ids))[: int(round(valid_frac * len(ids)))]
    valid = np.sort(ids[pick])
    return valid, np.setdiff1d(ids, valid)
