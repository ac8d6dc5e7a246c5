"""The watch-next framing of rating data (YouTube's "what to watch next", Zhao et al. RecSys'19).

MovieLens has ratings, not impressions. We read each rating as "the user watched this next":
  * a user's ratings sorted by (timestamp, item id) are their events, ranked 0, 1, 2, …;
  * the **query item** of a rating is the user's previous rated item (`NO_QUERY` = 0 for the
    first), what they had just watched;
  * every rating is a positive impression; `negatives` items the user never rated are drawn per
    positive with a fixed seed and inherit its timestamp, event and query item;
  * labels: ``click`` = 1 on positives and 0 on negatives (engagement); ``like`` = rating >= 4
    (satisfaction; 0 on negatives); ``rating`` = the rating on positives, null on negatives.

Negatives are drawn uniformly from the catalogue, rejecting items the user rated and repeats
within one (user, timestamp), so (user, item, timestamp) stays unique. Everything is vectorised.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.errors import ConfigError, DataValidationError

NO_QUERY = 0
LIKE_THRESHOLD = 4.0
_MAX_ROUNDS = 200


def add_events(ratings: pl.DataFrame) -> pl.DataFrame:
    """Order each user's ratings by (timestamp, item id); add ``event`` and ``query_item_id``.

    Args:
        ratings: user_id, item_id, rating, timestamp.

    Returns:
        The ratings sorted by (user_id, timestamp, item_id) with ``event`` (0-based rank within
        the user) and ``query_item_id`` (previous item, `NO_QUERY` for the first).
    """
    return ratings.sort("user_id", "timestamp", "item_id").with_columns(
        pl.int_range(pl.len()).over("user_id").cast(pl.Int64).alias("event"),
        pl.col("item_id").shift(1).over("user_id").fill_null(NO_QUERY).cast(pl.Int64).alias("query_item_id"),
    )


def sample_negatives(positives: pl.DataFrame, catalogue: np.ndarray, *, per_positive: int,
                     seed: int) -> pl.DataFrame:
    """Draw `per_positive` unrated items per positive.

    Args:
        positives: user_id, item_id, timestamp, event, query_item_id — every rating of each
            user (the "rated" set comes from here).
        catalogue: [I] item ids to draw from.
        per_positive: negatives per positive (>= 0).
        seed: random seed; the same inputs and seed give the same negatives.

    Returns:
        Negative rows: user_id, item_id, timestamp, event, query_item_id.
    """
    if per_positive < 0:
        raise ConfigError(f"negatives per positive must be >= 0, got {per_positive}")
    cols = ["user_id", "item_id", "timestamp", "event", "query_item_id"]
    if per_positive == 0 or positives.height == 0:
        return positives.select(cols).clear()
    catalogue = np.unique(np.asarray(catalogue, dtype=np.int64))
    n_items = len(catalogue)
    user = positives.get_column("user_id").to_numpy()
    item_idx = np.searchsorted(catalogue, positives.get_column("item_id").to_numpy())
    _, user_idx = np.unique(user, return_inverse=True)
    rated = np.unique(user_idx.astype(np.int64) * n_items + item_idx)

    # Each (user, timestamp) is a group within which negatives must be distinct and unrated.
    group = positives.select(pl.struct("user_id", "timestamp").rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    slots_per_group = np.bincount(group) * per_positive
    n_rated = np.bincount(user_idx)
    group_user = np.zeros(len(slots_per_group), dtype=np.int64)
    group_user[group] = user_idx
    short = slots_per_group > n_items - n_rated[group_user]
    if short.any():
        g = int(np.flatnonzero(short)[0])
        u = int(user[np.flatnonzero(group == g)[0]])
        raise DataValidationError(
            f"user {u} needs {int(slots_per_group[g])} distinct negatives at one timestamp but has rated "
            f"{int(n_rated[group_user[g]])} of {n_items} items; lower the number of negatives per positive"
        )

    # Counter-based draws: a slot's candidate is a hash of (seed, user, event, slot, round), so a
    # user's negatives depend on nobody else's data (cold-start users cannot shift warm users').
    slot_row = np.repeat(np.arange(positives.height), per_positive)
    slot_user = user_idx[slot_row].astype(np.int64)
    slot_group = group[slot_row]
    slot_keys = (user[slot_row], positives.get_column("event").to_numpy()[slot_row],
                 np.tile(np.arange(per_positive), positives.height))
    cand = _hashed_draw(seed, *slot_keys, 0, n=n_items)
    pending = np.ones(len(slot_row), dtype=bool)
    for round_ in range(1, _MAX_ROUNDS + 1):
        bad = np.isin(slot_user * n_items + cand, rated)
        key = slot_group * n_items + cand
        order = np.argsort(key, kind="stable")  # stable: the earlier slot keeps a repeated item
        repeat = np.zeros(len(key), dtype=bool)
        repeat[order[1:]] = key[order[1:]] == key[order[:-1]]
        pending = bad | repeat
        if not pending.any():
            break
        cand[pending] = _hashed_draw(seed, *(k[pending] for k in slot_keys), round_, n=n_items)
    else:
        raise DataValidationError(
            f"could not draw distinct unrated negatives for {int(pending.sum())} slots after {_MAX_ROUNDS} rounds"
        )
    src = positives.select(cols[:1] + cols[2:])[slot_row]
    return src.with_columns(pl.Series("item_id", catalogue[cand])).select(cols)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014): a fast, well-mixed 64-bit hash, vectorised."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hashed_draw(seed: int, *keys, n: int) -> np.ndarray:
    """Uniform ints in [0, n), one per element of the broadcast keys, a pure function of them."""
    h = _splitmix64(np.full(np.broadcast(*keys).shape, seed % (1 << 64), dtype=np.uint64))
    for k in keys:
        h = _splitmix64(h ^ np.asarray(k).astype(np.uint64))
    return (h % np.uint64(n)).astype(np.int64)


def watch_next_rows(ratings: pl.DataFrame, catalogue: np.ndarray, *, negatives: int = 4,
                    seed: int = 0) -> pl.DataFrame:
    """Ratings → impressions in the watch-next framing (see module docstring).

    Args:
        ratings: user_id, item_id, rating, timestamp (validated).
        catalogue: [I] item ids negatives are drawn from.
        negatives: negatives per positive.
        seed: random seed.

    Returns:
        Rows sorted by (user_id, event, click descending, item_id) with user_id, item_id,
        query_item_id, timestamp, event, click (i8), like (i8), rating (f32, null on negatives).
    """
    pos = add_events(ratings)
    neg = sample_negatives(pos, catalogue, per_positive=negatives, seed=seed)
    pos_rows = pos.select(
        "user_id", "item_id", "query_item_id", "timestamp", "event",
        pl.lit(1, dtype=pl.Int8).alias("click"),
        (pl.col("rating") >= LIKE_THRESHOLD).cast(pl.Int8).alias("like"),
        pl.col("rating").cast(pl.Float32),
    )
    neg_rows = neg.select(
        "user_id", "item_id", "query_item_id", "timestamp", "event",
        pl.lit(0, dtype=pl.Int8).alias("click"),
        pl.lit(0, dtype=pl.Int8).alias("like"),
        pl.lit(None, dtype=pl.Float32).alias("rating"),
    )
    return pl.concat([pos_rows, neg_rows]).sort(
        ["user_id", "event", "click", "item_id"], descending=[False, False, True, False]
    )
