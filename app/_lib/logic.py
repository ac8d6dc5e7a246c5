"""The app's pure logic (no Streamlit): re-blending, before/after diffs, the ratings CSV, log frames.

Everything here takes and returns plain Python / pandas objects so it can be tested without a
browser or a Streamlit session.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from recsys.report import smooth
from recsys.serving import blend_scale

#: Upload limits of the new-user ratings file.
MAX_UPLOAD_BYTES = 1_048_576  # 1 MB as Streamlit counts it (max_upload_size=1)
MAX_UPLOAD_ROWS = 200
#: What each task stands for on the page.
TASK_GROUPS = {"click": "engagement", "watch": "engagement", "like": "satisfaction", "rating": "satisfaction"}


class RatingsFileError(ValueError):
    """An uploaded ratings file the app cannot use; the message says what to fix."""


# --------------------------------------------------------------------------- blending


def scaled(task: str, value: float) -> float:
    """A task's prediction on the blend's [0, 1] scale, exactly as serving blends it."""
    return float(blend_scale(task, value))


def reblend(items: Iterable[Any], weights: Mapping[str, float]) -> pd.DataFrame:
    """Re-rank already-scored candidates under new task weights (no retrieval, no ranker call).

    Args:
        items: `recsys.serving.Recommendation`s (or objects with ``item_id``, ``title``, ``rank``,
            ``retrieval_score`` and ``scores``), e.g. a request's full candidate list.
        weights: task → weight >= 0; tasks with weight 0 are ignored; at least one must be > 0.

    Returns:
        One row per item, best first: ``rank``, ``item_id``, ``title``, ``blended``, one column per
        task, ``default_rank`` (the item's rank in `items`) and ``move`` (default_rank − rank:
        positive = moved up).
    """
    weights = {t: float(w) for t, w in weights.items() if w and w > 0}
    if not weights:
        raise ValueError("at least one task weight must be above 0")
    total = sum(weights.values())
    rows = []
    for it in items:
        blended = sum(w * scaled(t, it.scores[t]) for t, w in weights.items() if t in it.scores) / total
        rows.append({"item_id": it.item_id, "title": it.title, "blended": blended, **it.scores,
                     "retrieval_score": it.retrieval_score, "default_rank": it.rank})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values(["blended", "default_rank"], ascending=[False, True], kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    frame["move"] = frame["default_rank"] - frame["rank"]
    return frame


def compare(before: Sequence[int], after: Sequence[int]) -> tuple[list[str], list[int]]:
    """What changed between two ranked lists of item ids.

    Returns:
        (a label per item of `after`: ``"new"``, ``"▲ n"`` (moved up n places), ``"▼ n"`` or ``"="``;
        the items of `before` that are no longer in `after`).
    """
    where = {item: r for r, item in enumerate(before)}
    labels = []
    for r, item in enumerate(after):
        if item not in where:
            labels.append("new")
        elif where[item] > r:
            labels.append(f"▲ {where[item] - r}")
        elif where[item] < r:
            labels.append(f"▼ {r - where[item]}")
        else:
            labels.append("=")
    kept = set(after)
    return labels, [i for i in before if i not in kept]


# --------------------------------------------------------------------------- the ratings file


def parse_ratings_csv(data: bytes | None, *, known_items: Container[int], name: str = "the file",
                      max_bytes: int = MAX_UPLOAD_BYTES, max_rows: int = MAX_UPLOAD_ROWS
                      ) -> tuple[list[tuple[int, float]], list[str]]:
    """Validate an uploaded ``item_id,rating`` CSV.

    Args:
        data: the file's bytes.
        known_items: the catalogue's item ids.
        name: the file's name, for messages.

    Returns:
        (ratings in file order, notes such as "item 50 is rated twice; the last rating is used").

    Raises:
        RatingsFileError: empty, too big, not UTF-8 text, not the expected header, too many rows,
            a malformed line, a rating outside 1..5, or item ids not in the catalogue. The message
            names the line and value and says what to do.
    """
    example = "a header line `item_id,rating` and one line per rated video, e.g. `50,5`"
    if data is None or not data.strip():
        raise RatingsFileError(f"{name} is empty. Upload a CSV with {example}.")
    if len(data) > max_bytes:
        raise RatingsFileError(f"{name} is too large ({len(data) / 2**20:.1f} MB); the limit is "
                               f"{max_bytes / 2**20:.0f} MB and {max_rows} ratings.")
    if b"\x00" in data:
        raise RatingsFileError(f"{name} is not a CSV text file (it holds binary data). Upload a CSV with {example}.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RatingsFileError(f"{name} is not a CSV text file (it is not UTF-8 text). "
                               f"Upload a CSV with {example}.") from None
    try:
        rows = [(n, r) for n, r in enumerate(csv.reader(io.StringIO(text)), start=1) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise RatingsFileError(f"{name} is not a readable CSV ({exc}). Upload a CSV with {example}.") from None
    if not rows:
        raise RatingsFileError(f"{name} is empty. Upload a CSV with {example}.")
    header = [c.strip().lower() for c in rows[0][1]]
    if header != ["item_id", "rating"]:
        found = ",".join(rows[0][1])
        raise RatingsFileError(f"{name} is not the expected CSV: its first line should be the header `item_id,rating`, "
                               f"found `{found[:60]}{'…' if len(found) > 60 else ''}`.")
    body = rows[1:]
    if not body:
        raise RatingsFileError(f"{name} has a header but no ratings (zero rows). Add one line per rated video, e.g. `50,5`.")
    if len(body) > max_rows:
        raise RatingsFileError(f"{name} has {len(body)} ratings; the limit is {max_rows}. Keep your first {max_rows}.")
    ratings: dict[int, float] = {}
    notes, unknown = [], []
    for line, row in body:
        if len(row) != 2:
            raise RatingsFileError(f"{name}, line {line}: expected 2 values `item_id,rating`, found {len(row)}.")
        item_text, rating_text = row[0].strip(), row[1].strip()
        try:
            item = int(item_text)
        except ValueError:
            raise RatingsFileError(f"{name}, line {line}: item_id `{item_text[:30]}` is not a whole number.") from None
        try:
            rating = float(rating_text)
        except ValueError:
            rating = math.nan
        if not (math.isfinite(rating) and 1 <= rating <= 5):
            raise RatingsFileError(f"{name}, line {line}: rating `{rating_text[:30]}` must be a number from 1 to 5.")
        if item not in known_items:
            unknown.append(item)
            continue
        if item in ratings:
            notes.append(f"item {item} is rated more than once; the last rating ({rating:g}) is used")
            del ratings[item]  # keeps the order of the last rating
        ratings[item] = rating
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (", …" if len(unknown) > 5 else "")
        raise RatingsFileError(f"{name} names {len(unknown)} item id(s) not in the catalogue ({shown}). "
                               "Use item ids of the catalogue (search a title above to see its id).")
    return list(ratings.items()), notes


# --------------------------------------------------------------------------- training logs


def step_frame(steps: Sequence[Mapping[str, Any]], key: str, *, window: int = 1, max_points: int = 2000
               ) -> pd.DataFrame:
    """Long frame (step, series, value) of a per-step dict field of metrics.jsonl (``loss``,
    ``weight``, ``grad_cosine``), smoothed and thinned to at most `max_points` per series."""
    records = [r for r in steps if isinstance(r.get(key), Mapping)]
    names = list(dict.fromkeys(n for r in records for n in r[key]))
    parts = []
    for name in names:
        pts = [(r["step"], r[key][name]) for r in records if r[key].get(name) is not None]
        if not pts:
            continue
        xs, ys = zip(*pts)
        ys = smooth(list(ys), max(1, window))
        stride = max(1, len(xs) // max_points)
        parts.append(pd.DataFrame({"step": xs[::stride], "series": name, "value": ys[::stride]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["step", "series", "value"])


def gate_frame(steps: Sequence[Mapping[str, Any]], *, late_fraction: float = 0.2) -> pd.DataFrame:
    """Mean gate weight per (task, expert) over the last `late_fraction` of logged gate records."""
    gates = [r["gates"] for r in steps if isinstance(r.get("gates"), Mapping)]
    if not gates:
        return pd.DataFrame(columns=["task", "expert", "weight"])
    last = gates[-max(1, int(len(gates) * late_fraction)):]
    rows = []
    for task in last[0]:
        n = len(last[0][task])
        for e in range(n):
            vals = [g[task][e] for g in last if task in g and len(g[task]) == n]
            rows.append({"task": task, "expert": f"expert {e}", "weight": sum(vals) / len(vals)})
    return pd.DataFrame(rows)


def epoch_frame(epochs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long frame (epoch, metric, value) of the validation AUCs per epoch."""
    rows = [{"epoch": e["epoch"], "metric": k, "value": v} for e in epochs for k, v in (e.get("valid") or {}).items()
            if k.endswith("_auc") and isinstance(v, int | float)]
    return pd.DataFrame(rows, columns=["epoch", "metric", "value"])


# --------------------------------------------------------------------------- evaluation tables


def ranker_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """eval/ranker.json as rows (task, metric, model, popularity, random)."""
    scorers = [s for s in ("model", "popularity", "random") if isinstance(report.get(s), Mapping)]
    rows = []
    for task, metrics in (report.get("model") or {}).items():
        for name in metrics:
            if name.endswith(("_users", "_skipped")):
                continue
            rows.append({"task": task, "metric": name,
                         **{s: (report[s].get(task) or {}).get(name) for s in scorers}})
    return pd.DataFrame(rows)


def coldstart_table(report: Mapping[str, Any], metric: str) -> pd.DataFrame:
    """coldstart.json: one row per method, one column per K, of `metric` (and adaptation ms)."""
    rows = []
    for method in report.get("methods", []):
        per_k = report.get("results", {}).get(method, {})
        row = {"method": method}
        for k in report.get("shots", []):
            row[f"K={k}"] = (per_k.get(str(k)) or {}).get(metric)
        rows.append(row)
    return pd.DataFrame(rows)


def affinity_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    """affinity.json's matrix in long form: (metric, partner, gain, std)."""
    m = report.get("matrix") or {}
    rows = []
    for row in m.get("rows", []):
        for col in m.get("columns", []):
            cell = (m.get("cells", {}).get(row["key"]) or {}).get(col) or {}
            rows.append({"metric": row.get("label", row["key"]), "partner": "all tasks" if col == "all" else f"with {col}",
                         "gain": cell.get("mean"), "std": cell.get("std")})
    return pd.DataFrame(rows, columns=["metric", "partner", "gain", "std"])
