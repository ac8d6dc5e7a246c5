"""Schema and content checks for raw frames, with errors that name the problem.

Every loader runs its frames through these checks before anything is derived from them. A
failure raises `DataValidationError` whose message names the file, the column, how many rows
are bad and one example, and says what to do. polars reads a header-only file as 0 rows and
random bytes as a 1-row frame, so content is checked, not only the column names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import polars as pl

from recsys.errors import DataValidationError


def _where(source: str, column: str | None = None) -> str:
    return f"{source}, column {column!r}" if column else source


def require_columns(frame: pl.DataFrame, columns: Iterable[str], *, source: str) -> None:
    """Every name in `columns` is a column of `frame`."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{source}: missing column(s) {missing}; found {frame.columns}"
        )


def require_rows(frame: pl.DataFrame, *, source: str, what: str = "rows") -> None:
    """`frame` is not empty."""
    if frame.height == 0:
        raise DataValidationError(f"{source}: no {what} (the file is empty or holds only a header)")


def require_no_nulls(frame: pl.DataFrame, columns: Sequence[str], *, source: str) -> None:
    """No null (or NaN, for float columns) in `columns`."""
    for c in columns:
        col = frame.get_column(c)
        bad = col.is_null()
        if col.dtype.is_float():
            bad = bad | col.is_nan()
        n_bad = int(bad.sum())
        if n_bad:
            row = int(bad.arg_true()[0])
            raise DataValidationError(
                f"{_where(source, c)}: {n_bad} missing or NaN value(s), first at row {row + 1}"
            )


def cast_column(frame: pl.DataFrame, column: str, dtype: pl.DataType, *, source: str) -> pl.DataFrame:
    """Cast `column` to `dtype`, naming the first value that does not convert."""
    col = frame.get_column(column)
    converted = col.cast(dtype, strict=False)
    bad = converted.is_null() & col.is_not_null()
    if col.dtype.is_float() and dtype.is_integer():
        bad = bad | (col.is_not_null() & (col.fill_nan(0.5) != col.fill_nan(0.5).round()))
    n_bad = int(bad.sum())
    if n_bad:
        example = col.filter(bad)[0]
        raise DataValidationError(
            f"{_where(source, column)}: {n_bad} value(s) are not {dtype}, e.g. {example!r}"
        )
    return frame.with_columns(converted.alias(column))


def require_range(frame: pl.DataFrame, column: str, *, lo: float | None = None, hi: float | None = None,
                  source: str) -> None:
    """Values of `column` lie in [lo, hi] (nulls are checked elsewhere)."""
    col = frame.get_column(column)
    bad = pl.Series([False] * frame.height)
    if lo is not None:
        bad = bad | (col < lo).fill_null(False)
    if hi is not None:
        bad = bad | (col > hi).fill_null(False)
    n_bad = int(bad.sum())
    if n_bad:
        example = col.filter(bad)[0]
        raise DataValidationError(
            f"{_where(source, column)}: {n_bad} value(s) outside [{lo}, {hi}], e.g. {example!r}"
        )


def require_unique(frame: pl.DataFrame, keys: Sequence[str], *, source: str) -> None:
    """No two rows share the same `keys`."""
    dup = frame.select(keys).is_duplicated()
    n_dup = int(dup.sum())
    if n_dup:
        example = frame.filter(dup).row(0, named=True)
        shown = {k: example[k] for k in keys}
        raise DataValidationError(
            f"{source}: {n_dup} rows share a duplicated ({', '.join(keys)}), e.g. {shown}; "
            "remove the duplicates"
        )


def require_references(frame: pl.DataFrame, column: str, known: pl.Series, *, source: str,
                       target: str) -> None:
    """Every value of `column` appears in `known` (ids that reference nothing are errors)."""
    bad = ~frame.get_column(column).is_in(known.implode())
    n_bad = int(bad.sum())
    if n_bad:
        example = frame.get_column(column).filter(bad)[0]
        raise DataValidationError(
            f"{_where(source, column)}: {n_bad} row(s) reference ids absent from {target}, e.g. {example!r}"
        )
