"""Raw frames → a prepared data set directory, the input of every model in the project.

A prepared directory holds:
    train.parquet, valid.parquet, test.parquet   warm users, per-user temporal split
    coldstart.parquet                            the new users' impressions (episodes)
    items.parquet, users.parquet                 catalogue and users: raw and encoded features
    schema.json                                  field layout of x and the task order of y
    vocab.json                                   raw value of every id, per vocabulary
    summary.json                                 rows, users, items, label rates, file hashes

Row columns: user_id, item_id, query_item_id, timestamp, event, click, like, rating, the
``f_*`` feature ids, and for simulator data position, watch_fraction and ``true_*`` columns.

The directory is written to a temporary sibling and renamed into place, so a failure leaves
the previous version (or nothing) behind, never half of one. The same inputs and seed give
byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data import features as F
from recsys.data.framing import watch_next_rows
from recsys.data.splits import COLD, TEST, TRAIN, VALID, assign_splits, pick_cold_users
from recsys.errors import ConfigError, DataValidationError
from recsys.io import atomic_dir

SPLIT_NAMES = (TRAIN, VALID, TEST, COLD)
BASE_COLUMNS = ["user_id", "item_id", "query_item_id", "timestamp", "event", "click", "like", "rating"]


@dataclass(frozen=True)
class PrepareConfig:
    """Options of the watch-next protocol.

    Attributes:
        negatives: sampled negatives per positive (MovieLens only).
        seed: seed of the cold-start users and the negatives.
        cold_frac: fraction of users set apart as new users.
        valid_frac, test_frac: per-user fractions of events for valid and test.
    """

    negatives: int = 4
    seed: int = 0
    cold_frac: float = 0.2
    valid_frac: float = 0.1
    test_frac: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.negatives, int) or self.negatives < 0:
            raise ConfigError(f"negatives must be an integer >= 0, got {self.negatives!r}")
        if not 0 <= self.cold_frac < 1:
            raise ConfigError(f"cold_frac must be in [0, 1), got {self.cold_frac}")
        if not (0 < self.valid_frac < 0.5 and 0 < self.test_frac < 0.5):
            raise ConfigError(f"valid_frac and test_frac must be in (0, 0.5), got {self.valid_frac}, {self.test_frac}")


def prepare_movielens(ml, out_dir: str | Path, config: PrepareConfig = PrepareConfig(), *,
                      source: dict | None = None) -> dict:
    """Frame MovieLens as watch-next impressions, split, encode and write `out_dir`.

    Args:
        ml: `recsys.data.sources.movielens.MovieLens` frames (validated).
        out_dir: the prepared directory to (re)write.
        config: protocol options.
        source: provenance recorded in the summary (e.g. the raw cache manifest).

    Returns:
        The summary (also written to ``summary.json``).
    """
    rows = watch_next_rows(ml.ratings, ml.items.get_column("item_id").to_numpy(),
                           negatives=config.negatives, seed=config.seed)
    # Drawn from the user table, so the choice does not depend on anyone's ratings.
    cold = pick_cold_users(ml.users.get_column("user_id").to_numpy(), config.cold_frac, config.seed)
    events = rows.filter(pl.col("click") == 1).select("user_id", "event")
    splits = assign_splits(events, cold, valid_frac=config.valid_frac, test_frac=config.test_frac)
    rows = rows.join(splits, on=["user_id", "event"], how="left", maintain_order="left")
    users = F.movielens_user_features(ml.users)
    items = F.movielens_item_features(ml.items)
    meta = {"protocol": asdict(config), "source": source or {}}
    titles = ml.items.select("item_id", "title", pl.col("year").alias("release_year"), pl.col("genres").alias("genre_names"))
    return write_prepared(out_dir, rows, users, items, tasks=("click", "like", "rating"), dataset=ml.name,
                          item_info=titles, user_info=ml.users, meta=meta)


def prepare_synthetic(world, out_dir: str | Path, *, valid_frac: float = 0.1, test_frac: float = 0.1) -> dict:
    """Split, encode and write a `recsys.data.sources.synthetic.SimulatedWorld`.

    The simulator already holds impressions (clicked or not), so no negatives are drawn; an
    event is one request (slate); users flagged ``is_new`` are the cold-start users.
    """
    imp = world.impressions.with_columns(
        pl.col("request_id").rank("dense").over("user_id").cast(pl.Int64).sub(1).alias("event")
    )
    events = imp.select("user_id", "event").unique().sort("user_id", "event")
    cold = world.users.filter(pl.col("is_new")).get_column("user_id").to_numpy()
    splits = assign_splits(events, cold, valid_frac=valid_frac, test_frac=test_frac)
    rows = imp.join(splits, on=["user_id", "event"], how="left", maintain_order="left")
    latent_items = {"quality", "click_appeal", "is_clickbait", "popularity", "title"}
    item_feats = [c for c in world.items.columns if c not in latent_items]
    user_feats = [c for c in world.users.columns if c != "is_new"]
    meta = {"protocol": {"simulator": asdict(world.config), "valid_frac": valid_frac, "test_frac": test_frac},
            "source": {"source": "simulator"}}
    return write_prepared(
        out_dir, rows, world.users.select(user_feats), world.items.select(item_feats),
        tasks=("click", "like", "rating", "watch"), dataset="synth", item_info=world.items,
        user_info=world.users, meta=meta, num_positions=world.config.slate_size,
    )


def write_prepared(out_dir: str | Path, rows: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame, *,
                   tasks: tuple[str, ...], dataset: str, item_info: pl.DataFrame, user_info: pl.DataFrame,
                   meta: dict, num_positions: int = 0) -> dict:
    """Encode features (vocabularies from training rows only) and write the directory atomically."""
    if rows.height == 0:
        raise DataValidationError(f"{dataset}: no impressions to prepare")
    train_mask = rows.get_column("split") == TRAIN
    if not train_mask.any():
        raise DataValidationError(f"{dataset}: no training rows (every user is a cold-start user?)")
    enc, user_table, item_table, schema, vocabs = F.encode_rows(
        rows, users, items, train_mask=train_mask, tasks=tasks, dataset=dataset, num_positions=num_positions
    )
    extra = [c for c in ("position", "watch_fraction") if c in enc.columns]
    truth = sorted(c for c in enc.columns if c.startswith("true_"))
    columns = BASE_COLUMNS + extra + truth + [f.name for f in schema.fields]

    with atomic_dir(out_dir) as tmp:
        files = {}
        for split in SPLIT_NAMES:
            part = enc.filter(pl.col("split") == split).select(columns)
            files[f"{split}.parquet"] = _write_parquet(part, tmp / f"{split}.parquet")
        cold_users = set(enc.filter(pl.col("split") == COLD).get_column("user_id").unique().to_list())
        train_pop = enc.filter(train_mask & (pl.col("click") == 1)).group_by("item_id").agg(pl.len().alias("train_clicks"))
        item_out = (item_info.join(item_table, on="item_id", how="left", maintain_order="left")
                    .join(train_pop, on="item_id", how="left", maintain_order="left")
                    .with_columns(pl.col("train_clicks").fill_null(0).cast(pl.Int64)).sort("item_id"))
        user_out = (user_info.join(user_table, on="user_id", how="left", maintain_order="left")
                    .with_columns(pl.col("user_id").is_in(pl.Series(sorted(cold_users), dtype=pl.Int64).implode()).alias("is_cold"))
                    .sort("user_id"))
        files["items.parquet"] = _write_parquet(item_out, tmp / "items.parquet")
        files["users.parquet"] = _write_parquet(user_out, tmp / "users.parquet")
        files["schema.json"] = _write_text(tmp / "schema.json", schema.dumps())
        vocab_json = {name: [_jsonable(v) for v in voc.values] for name, voc in sorted(vocabs.items())}
        files["vocab.json"] = _write_text(tmp / "vocab.json", json.dumps(vocab_json, indent=1, sort_keys=True) + "\n")
        summary = _summary(enc, schema, dataset, meta, files, n_catalogue=item_info.height, vocabs=vocabs)
        _write_text(tmp / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _jsonable(v):
    return v.item() if isinstance(v, np.generic) else v


def _write_parquet(frame: pl.DataFrame, path: Path) -> str:
    frame.write_parquet(path, compression="zstd", statistics=False, row_group_size=1 << 20)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_text(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()


def _summary(enc: pl.DataFrame, schema, dataset: str, meta: dict, files: dict, *, n_catalogue: int,
             vocabs: dict) -> dict:
    per_split = {}
    for split in SPLIT_NAMES:
        part = enc.filter(pl.col("split") == split)
        clicks = part.filter(pl.col("click") == 1)
        per_split[split] = {
            "rows": part.height,
            "positives": clicks.height,
            "users": part.get_column("user_id").n_unique(),
            "items": part.get_column("item_id").n_unique(),
            "click_rate": _rate(part.get_column("click")),
            "like_rate": _rate(part.get_column("like")),
            "like_rate_among_clicks": _rate(clicks.get_column("like")),
            "rating_mean": _rate(clicks.get_column("rating")),
        }
        if "watch_fraction" in part.columns:
            per_split[split]["watch_mean_among_clicks"] = _rate(clicks.get_column("watch_fraction"))
    warm = enc.filter(pl.col("split") != COLD)
    return {
        "dataset": dataset,
        "splits": per_split,
        "users": {"warm": warm.get_column("user_id").n_unique(),
                  "cold_start": per_split[COLD]["users"],
                  "total": enc.get_column("user_id").n_unique()},
        "items": {"catalogue": n_catalogue, "in_train_vocabulary": vocabs["item_id"].size - 2},
        "tasks": list(schema.tasks),
        "fields": {f.name: {"size": f.size, "width": f.width} for f in schema.fields},
        "files": files,
        **meta,
    }


def _rate(series: pl.Series) -> float | None:
    if series.len() == 0 or series.null_count() == series.len():
        return None
    return round(float(series.cast(pl.Float64).mean()), 6)
