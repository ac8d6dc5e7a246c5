"""Does the ranker gain from the user's own recent history, and do the peers gain as much?

Writes a copy of a prepared data set whose train, valid and test rows carry four more user-side
fields, each computed causally (a row at event e reads only its user's events before e; a
user's splits are read in event order, so a test row sees that user's training events, as a
served request would):

    f_user_recent_clicks     the last L clicked items, most recent last (item vocabulary, width L)
    f_user_recent_likes      the last L liked items (item vocabulary, width L)
    f_user_recent_like_rate  the share of likes among the last 10 clicks, in tenths: ids 2..12;
                             NONE (0) before the first click
    f_user_activity          earlier clicks n, as min(floor(log2(n + 1)), 9): ids 2..11

Every model in `compare_peers.py` reads every field of the schema (the peers mean-pool the
multi-valued ones, as ours does), so one comparison on the copy answers both questions with the
same inputs for all. The copy has no ``coldstart.parquet``: on new users the fields would carry
events past the K support events the cold-start protocol allows, so `recsys coldstart` refuses
the copy (file not found) instead of measuring something else.

This is a measurement, not yet a feature of `recsys data prepare`: serving and the cold-start
adapters do not build these fields.

Usage:
    python scripts/history_features.py --src data/prepared/ml-100k --out runs/ml-100k-history
    python scripts/compare_peers.py --data runs/ml-100k-history --archs esmm shared_bottom \\
        --peers rechub --out runs/compare_peers_history.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.data.fields import FIRST_ID, Field, Schema  # noqa: E402
from recsys.data.history import earlier_click_counts, recent_clicks  # noqa: E402
from recsys.data.tensors import load_schema, split_file  # noqa: E402
from recsys.errors import DataValidationError  # noqa: E402
from recsys.io import atomic_dir  # noqa: E402

SPLITS = ("train", "valid", "test")
RATE_WINDOW = 10  # clicks the like rate is taken over
ACTIVITY_BUCKETS = 10  # log2 buckets of the earlier-click count: 0, 1, 2-3, ..., 256+


def user_state(rows: pl.DataFrame, length: int) -> dict[str, np.ndarray]:
    """The four fields of every row of `rows` (all splits of the users, any order).

    Args:
        rows: user_id, event, f_item_id, click, like.
        length: L, the history length.

    Returns:
        ``{field name: [N] or [N, L] int64 ids}``.
    """
    user = torch.from_numpy(rows.get_column("user_id").to_numpy().astype(np.int64))
    event = torch.from_numpy(rows.get_column("event").to_numpy().astype(np.int64))
    item = torch.from_numpy(rows.get_column("f_item_id").to_numpy().astype(np.int64))
    clicked = torch.from_numpy(rows.get_column("click").to_numpy() == 1)
    liked = torch.from_numpy(rows.get_column("like").fill_null(0).to_numpy() == 1)
    # the like flag of each of the last clicks: 2 (not liked) or 3 (liked) in place of the item
    flags = recent_clicks(user, event, torch.where(liked, 3, 2), clicked, length=RATE_WINDOW).numpy()
    n_recent, n_liked = (flags > 0).sum(1), (flags == 3).sum(1)
    rate = np.where(n_recent > 0, FIRST_ID + np.round(10 * n_liked / np.maximum(n_recent, 1)), 0).astype(np.int64)
    n_earlier = earlier_click_counts(user, event, clicked).numpy()
    activity = FIRST_ID + np.minimum(np.floor(np.log2(n_earlier + 1)), ACTIVITY_BUCKETS - 1).astype(np.int64)
    return {
        "f_user_recent_clicks": recent_clicks(user, event, item, clicked, length=length).numpy(),
        "f_user_recent_likes": recent_clicks(user, event, item, liked, length=length).numpy(),
        "f_user_recent_like_rate": rate,
        "f_user_activity": activity,
    }


def new_fields(schema: Schema, length: int) -> list[Field]:
    item = schema.field("f_item_id")
    return [
        Field("f_user_recent_clicks", "user", item.vocab, item.size, width=length),
        Field("f_user_recent_likes", "user", item.vocab, item.size, width=length),
        Field("f_user_recent_like_rate", "user", "user_recent_like_rate", FIRST_ID + 11),
        Field("f_user_activity", "user", "user_activity", FIRST_ID + ACTIVITY_BUCKETS),
    ]


def write_copy(src: Path, out: Path, length: int = 20) -> Schema:
    """Write the copy of `src` with the four fields to `out` (replaced whole, never half-written)."""
    if length < 1:
        raise DataValidationError(f"--length must be >= 1, got {length}")
    schema = load_schema(src)
    added = new_fields(schema, length)
    taken = [f.name for f in added if f.name in {g.name for g in schema.fields}]
    if taken:
        raise DataValidationError(f"{src} already has the fields {taken}; give the original prepared data set")
    frames = []
    for i, split in enumerate(SPLITS):
        path, _ = split_file(src, split)
        frame = pl.read_parquet(path)
        missing = [c for c in ("user_id", "event", "f_item_id", "click", "like") if c not in frame.columns]
        if missing:
            raise DataValidationError(f"{path} lacks columns {missing}; the fields need them")
        frames.append(frame.with_columns(pl.lit(i).alias("_split"), pl.int_range(pl.len()).alias("_row")))
    rows = pl.concat(frames, how="vertical")
    state = user_state(rows, length)
    columns = [pl.Series(name, values) if values.ndim == 1 else
               pl.Series(name, values, dtype=pl.Array(pl.Int64, values.shape[1])).cast(pl.List(pl.Int64))
               for name, values in state.items()]
    rows = rows.with_columns(columns)
    derived = Schema(fields=tuple(schema.fields) + tuple(added), tasks=schema.tasks,
                     num_positions=schema.num_positions, dataset=schema.dataset)
    with atomic_dir(out) as tmp:
        for i, split in enumerate(SPLITS):
            part = rows.filter(pl.col("_split") == i).sort("_row").drop("_split", "_row")
            part.write_parquet(tmp / f"{split}.parquet")
        (tmp / "schema.json").write_text(derived.dumps())
        for name in ("items.parquet", "users.parquet", "vocab.json"):
            shutil.copyfile(src / name, tmp / name)
        files = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(tmp.iterdir())}
        summary = json.loads((src / "summary.json").read_text()) if (src / "summary.json").exists() else {}
        summary.update({"files": files, "derived": {"from": str(src.resolve()), "history_length": length,
                                                     "fields": [f.name for f in added],
                                                     "no_coldstart_split": True}})
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return derived


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=Path("data/prepared/ml-100k"), help="prepared data set")
    p.add_argument("--out", type=Path, default=Path("runs/ml-100k-history"), help="directory of the copy")
    p.add_argument("--length", type=int, default=20, help="L, items in each history field")
    args = p.parse_args(argv)
    try:
        schema = write_copy(args.src, args.out, args.length)
    except DataValidationError as err:
        print(f"history_features: {err}", file=sys.stderr)
        return 2
    added = ", ".join(f.name for f in schema.fields[-4:])
    print(f"wrote {args.out} ({added}); next: python scripts/compare_peers.py --data {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
