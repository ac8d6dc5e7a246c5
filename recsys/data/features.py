"""Categorical features: buckets, vocabularies built from training rows only, and encoding.

Every model input is a categorical id (see `recsys.data.fields` for the reserved ids). A
vocabulary maps the raw values seen in the *training* rows to ids 2, 3, … in sorted order;
anything else (a cold-start user's id, an item only new users rated) becomes OOV = 1. The
candidate item and the query item share the item vocabularies, so one embedding table serves
both.

Encoded columns are named ``f_<side>_<feature>``: ``f_user_id``, ``f_user_age``, ``f_item_id``,
``f_item_genres`` (multi-valued), ``f_query_id``, ``f_query_genres``, …
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.data.fields import FIRST_ID, OOV, PAD, Field, Schema

# --------------------------------------------------------------------------- MovieLens buckets

AGE_EDGES = (18, 25, 35, 45, 50, 56)  # MovieLens-1M's age groups
AGE_LABELS = ("under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
YEAR_EDGES = (1950, 1960, 1970, 1980, 1990, 1995, 1996, 1997, 1998)
YEAR_LABELS = ("before 1950", "1950s", "1960s", "1970s", "1980s", "1990-94", "1995", "1996", "1997", "1998+")


def bucket(values: pl.Expr, edges: tuple[int, ...], labels: tuple[str, ...], *, missing: str = "unknown") -> pl.Expr:
    """Map numbers to labelled half-open buckets ``[edge_i, edge_{i+1})``; null → `missing`."""
    expr = pl.when(values.is_null()).then(pl.lit(missing))
    for edge, label in zip(edges, labels):
        expr = expr.when(values < edge).then(pl.lit(label))
    return expr.otherwise(pl.lit(labels[-1]))


def movielens_user_features(users: pl.DataFrame) -> pl.DataFrame:
    """user_id, age (bucket), gender, occupation, zip (first character, upper-case)."""
    return users.select(
        "user_id",
        bucket(pl.col("age"), AGE_EDGES, AGE_LABELS).alias("age"),
        pl.col("gender").str.to_uppercase(),
        pl.col("occupation").str.to_lowercase(),
        pl.when(pl.col("zip").str.len_chars() > 0).then(pl.col("zip").str.slice(0, 1).str.to_uppercase())
        .otherwise(pl.lit("unknown")).alias("zip"),
    )


def movielens_item_features(items: pl.DataFrame) -> pl.DataFrame:
    """item_id, year (bucket), genres (list)."""
    return items.select("item_id", bucket(pl.col("year"), YEAR_EDGES, YEAR_LABELS).alias("year"), "genres")


# --------------------------------------------------------------------------- vocabularies


@dataclass(frozen=True)
class Vocabulary:
    """Raw values → ids. ``values[i]`` has id ``FIRST_ID + i``."""

    name: str
    values: tuple

    @property
    def size(self) -> int:
        return FIRST_ID + len(self.values)

    @classmethod
    def fit(cls, name: str, series: pl.Series) -> Vocabulary:
        if isinstance(series.dtype, pl.List):
            series = series.explode()
        values = series.drop_nulls().unique().sort().to_list()
        return cls(name=name, values=tuple(values))

    def frame(self, column: str, dtype: pl.DataType) -> pl.DataFrame:
        return pl.DataFrame(
            {column: pl.Series(list(self.values), dtype=dtype),
             "_id": np.arange(FIRST_ID, self.size, dtype=np.int64)}
        )

    def encode(self, series: pl.Series) -> pl.Series:
        """Ids of `series` (OOV for unseen values; PAD for nulls inside lists)."""
        if isinstance(series.dtype, pl.List):
            inner = series.dtype.inner
            rows = pl.DataFrame({"_row": np.arange(len(series)), "_v": series}).explode("_v")
            coded = rows.join(self.frame("_v", inner), on="_v", how="left", maintain_order="left")
            coded = coded.with_columns(
                pl.when(pl.col("_v").is_null()).then(None).otherwise(pl.col("_id").fill_null(OOV)).alias("_id")
            )
            agg = coded.group_by("_row").agg(pl.col("_id").drop_nulls())
            # explode() may drop empty lists: join back on every row so none goes missing.
            out = pl.DataFrame({"_row": np.arange(len(series))}).join(agg, on="_row", how="left", maintain_order="left")
            return out.get_column("_id").fill_null(pl.lit([], dtype=pl.List(pl.Int64))).alias(series.name)
        frame = pl.DataFrame({"_v": series})
        coded = frame.join(self.frame("_v", series.dtype), on="_v", how="left", maintain_order="left")
        return coded.get_column("_id").fill_null(OOV).alias(series.name)


# --------------------------------------------------------------------------- encoding


def _side_table(raw: pl.DataFrame, key: str, side: str, seen: pl.Series,
                vocabs: dict[str, Vocabulary]) -> tuple[pl.DataFrame, list[Field]]:
    """Encode one side's raw table (key + feature columns) with vocabularies fitted on `seen` keys."""
    fitted = raw.filter(pl.col(key).is_in(seen.implode()))
    cols = [c for c in raw.columns if c != key]
    fields: list[Field] = []
    id_vocab = Vocabulary.fit(f"{side}_id", seen.unique())
    vocabs[id_vocab.name] = id_vocab
    out = {f"f_{side}_id": id_vocab.encode(raw.get_column(key))}
    fields.append(Field(name=f"f_{side}_id", side=side, vocab=id_vocab.name, size=id_vocab.size))
    for c in cols:
        vocab = Vocabulary.fit(f"{side}_{c}", fitted.get_column(c))
        vocabs[vocab.name] = vocab
        encoded = vocab.encode(raw.get_column(c))
        width = 1
        if isinstance(raw.schema[c], pl.List):
            width = max(1, int(raw.get_column(c).list.len().max() or 1))
        out[f"f_{side}_{c}"] = encoded
        fields.append(Field(name=f"f_{side}_{c}", side=side, vocab=vocab.name, size=vocab.size, width=width))
    table = pl.DataFrame({key: raw.get_column(key), **{k: v.alias(k) for k, v in out.items()}})
    return table, fields


def encode_rows(rows: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame, *, train_mask: pl.Series,
                tasks: tuple[str, ...], dataset: str, num_positions: int = 0
                ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, Schema, dict[str, Vocabulary]]:
    """Add the encoded ``f_*`` columns to `rows`, with vocabularies fitted on training rows only.

    Args:
        rows: impressions with user_id, item_id, query_item_id (0 = none).
        users: user_id + raw categorical user features (str/int; list for multi-valued).
        items: item_id + raw categorical item features.
        train_mask: [N] bool, the rows whose users and candidate items fit the vocabularies.
        tasks: label names present, in ``y`` order.
        dataset: data set name recorded in the schema.
        num_positions: slate positions (0 when none).

    Returns:
        (rows with f_* columns, encoded user table, encoded item table, schema, vocabularies).
    """
    vocabs: dict[str, Vocabulary] = {}
    train = rows.filter(train_mask)
    user_table, user_fields = _side_table(users, "user_id", "user", train.get_column("user_id"), vocabs)
    item_table, item_fields = _side_table(items, "item_id", "item", train.get_column("item_id"), vocabs)
    query_fields = [
        Field(name=f.name.replace("f_item_", "f_query_", 1), side="query", vocab=f.vocab, size=f.size, width=f.width)
        for f in item_fields
    ]
    query_table = item_table.rename({"item_id": "query_item_id", **{f.name: q.name for f, q in zip(item_fields, query_fields)}})
    out = (
        rows.join(user_table, on="user_id", how="left", maintain_order="left")
        .join(item_table, on="item_id", how="left", maintain_order="left")
        .join(query_table, on="query_item_id", how="left", maintain_order="left")
    )
    # No query item (a user's first event): every query field is NONE (PAD) rather than OOV.
    fills = []
    for q in query_fields:
        fills.append(pl.col(q.name).fill_null(pl.lit([], dtype=pl.List(pl.Int64))) if q.width > 1
                     else pl.col(q.name).fill_null(PAD))
    out = out.with_columns(fills)
    schema = Schema(fields=tuple(user_fields + item_fields + query_fields), tasks=tasks,
                    num_positions=num_positions, dataset=dataset)
    return out, user_table, item_table, schema, vocabs
