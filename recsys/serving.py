"""The recommender: retrieve → rank → blend → top-k, with a cold-start path for new users.

    user (or a new user's support set) + query item
      → user vector (two-tower) → index search: N candidates (default 500)
      → multi-task ranker (`Ranker.score_candidates`): per-task predictions; the user and query
        part is embedded and pushed through the ranker's first layers once per request, only
        the candidate part per candidate (a new user: the cold-start adapter's scorer)
      → blend: weighted mean of per-task predictions (probabilities; rating scaled to [0, 1])
      → drop items the user already engaged with → top-k

An unknown user is an `UnknownIdError`, or, with ``fallback=True``, an explicit, flagged
fallback (the most popular items), never a silent guess.

A request runs no Python per candidate and looks up nothing per candidate but one row: the index
is keyed by catalogue row, and every item's candidate input to the ranker (its item fields'
embeddings, `Ranker.embed_candidates`) is computed once at load, [I, F_c*D] floats (192 MB for
a million items at 3 fields of 16). `scripts/bench_serving.py` measures a request against its floors (the index's
single-query time + the ranker's FLOPs at the single-thread matmul rate) on a 1M-item catalogue.

Artifacts (a main-job directory): ``ranker/`` (published ranker), ``retriever/`` (two-tower and
item vectors), optionally ``index.json`` (index type and tuned parameters), ``adapters/NAME/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.data.fields import OOV, PAD
from recsys.data.tensors import fields_to_x, load_schema
from recsys.errors import CheckpointError, ConfigError, UnknownIdError

DEFAULT_WEIGHTS = {"click": 0.5, "like": 0.5}
RATING_RANGE = (1.0, 5.0)


def blend_scale(task: str, values):
    """A task's predictions on the blend's [0, 1] scale: rating 1..5 → 0..1, probabilities as
    they are. Works on arrays and on single numbers."""
    if task == "rating":
        lo, hi = RATING_RANGE
        return np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    return values


@dataclass
class Recommendation:
    item_id: int
    title: str
    rank: int
    blended: float
    retrieval_score: float
    scores: dict[str, float]


@dataclass
class RecommendResult:
    items: list[Recommendation]
    candidates: list[tuple[int, float]]  # (item id, retrieval score), best first
    fallback: str | None = None          # why the normal path was not taken, when it was not
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"fallback": self.fallback, "timings_ms": self.timings_ms,
                "items": [vars(r) for r in self.items],
                "candidates": [{"item_id": i, "retrieval_score": s} for i, s in self.candidates]}


class Recommender:
    """Two-stage recommender over a main-job directory.

    Args:
        run_dir: directory with ``ranker/`` and ``retriever/`` (and optionally ``index.json``).
        n_candidates: items retrieved per request.
        threads: torch/FAISS threads per request (1 is fastest on shared cores).
        device: where the ranker and the retriever's towers run (``cpu``, ``cuda``, ``auto``);
            the index searches on the CPU (FAISS), requests are built on the CPU and moved.
        onednn: on the CPU, rank through oneDNN with pre-packed weights (`Ranker.pack_cpu`;
            ~2x torch's float32 matmul rate on AMD CPUs, the same scores to float rounding).
    """

    def __init__(self, run_dir: str | Path, *, n_candidates: int = 500, threads: int = 1,
                 device: str = "cpu", onednn: bool = True) -> None:
        from recsys.checkpoint import load_published
        from recsys.models.registry import build_from_spec
        from recsys.train import resolve_device
        from recsys.train_retriever import load_retriever

        self.device = resolve_device(device)
        self.run_dir = Path(run_dir)
        self.n_candidates, self.threads = n_candidates, threads
        manifest, state = load_published(self.run_dir / "ranker")
        self.prepared = Path(manifest["dataset"])
        self.schema = load_schema(self.prepared)
        self.ranker = build_from_spec(manifest["model"], self.schema)
        self.ranker.load_state_dict(state)
        self.ranker.to(self.device).eval()
        self.onednn = bool(onednn and self.device.type == "cpu" and self.ranker.pack_cpu())
        self.tasks, self.esmm = tuple(manifest["tasks"]), bool(manifest.get("esmm", False))
        self.retriever, vectors, ids, _ = load_retriever(self.run_dir / "retriever")
        self.retriever.to(self.device)
        self._load_tables()
        self.index = self._build_index(vectors, ids)

    # ------------------------------------------------------------------ set-up

    def _build_index(self, vectors: np.ndarray, ids: np.ndarray):
        """The index over the item vectors, keyed by catalogue row (a search returns rows of
        `item_ids` / `item_x`, so a request maps no ids)."""
        import json

        from recsys.retrieval.registry import build_index

        spec = {"type": "flat", "params": {}}
        path = self.run_dir / "index.json"
        if path.exists():
            spec = json.loads(path.read_text())
        rows = np.searchsorted(self.item_ids, ids).clip(0, len(self.item_ids) - 1)
        unknown = self.item_ids[rows] != ids
        if unknown.any():
            raise CheckpointError(f"{self.run_dir / 'retriever'}: {int(unknown.sum())} item vectors belong to items "
                                  f"outside the catalogue of {self.prepared} (first id {int(ids[unknown][0])}); "
                                  "retrain the retriever on this data set")
        index = build_index(spec["type"], vectors.shape[1], threads=self.threads, **spec.get("params", {}))
        return index.build(vectors, rows)

    def _load_tables(self) -> None:
        items = pl.read_parquet(self.prepared / "items.parquet").sort("item_id")
        self.item_ids = items["item_id"].to_numpy()
        self.titles = dict(zip(self.item_ids.tolist(), items["title"].to_list()))
        self.item_x = torch.from_numpy(fields_to_x(items, self.schema, sides=("item",)))  # [I, W]
        self.popularity = items["train_clicks"].to_numpy()
        self.item_code = dict(zip(self.item_ids.tolist(), items["f_item_id"].to_list()))
        users = pl.read_parquet(self.prepared / "users.parquet")
        warm = users.filter(~pl.col("is_cold") & (pl.col("f_user_id") > OOV))
        self.user_x = dict(zip(warm["user_id"].to_list(), fields_to_x(warm, self.schema, sides=("user",))))
        rows = pl.concat([pl.read_parquet(self.prepared / f"{s}.parquet", columns=["user_id", "item_id", "event", "click"])
                          for s in ("train", "valid", "test")]).filter(pl.col("click") == 1).sort("user_id", "event")
        self.history = {u: g["item_id"].to_list() for (u,), g in rows.group_by("user_id", maintain_order=True)}
        self.q_cols = {f.name: self.schema.slice(f.name) for f in self.schema.side("query")}
        # a query item's fields are its item fields, copied column by column: x[query_dst] = item[query_src]
        query = self.schema.side("query")
        self._query_dst = self._columns(f.name for f in query)
        self._query_src = self._columns(f.name.replace("f_query_", "f_item_", 1) for f in query)
        self._item_cols = self._columns(f.name for f in self.schema.side("item"))
        # ids come from the tables above, checked when they were built: no per-request range check
        self.ranker.embedding.check_ids = False
        self.retriever.embedding.check_ids = False
        # every item's candidate input to the ranker, once: a request gathers rows of it (one
        # contiguous row per candidate instead of a look-up per item field); [I, F_c*D] floats
        with torch.no_grad():
            self.item_h = torch.cat([self.ranker.embed_candidates(self.item_x[s:s + 65536].to(self.device))
                                     for s in range(0, len(self.item_x), 65536)])

    def _columns(self, fields) -> torch.Tensor:
        """The columns of x that hold `fields`, in order: LongTensor."""
        width = self.schema.width
        return torch.tensor([c for name in fields for c in range(*self.schema.slice(name).indices(width))],
                            dtype=torch.long)

    # ------------------------------------------------------------------ requests

    def known_user(self, user_id: int) -> bool:
        return int(user_id) in self.user_x

    def recommend(self, *, user_id: int | None = None, support: list[tuple[int, float]] | None = None,
                  query_item: int | None = None, k: int = 10, weights: dict[str, float] | None = None,
                  adapter=None, exclude_seen: bool = True, fallback: bool = False,
                  history: list[int] | None = None) -> RecommendResult:
        """Top-k for a known user, or for a new user from their support set.

        Args:
            user_id: a warm user's id (exclusive with `support`).
            support: a new user's ratings ``[(item_id, rating 1..5), ...]`` in time order.
            query_item: what the user just watched (default: their last item, if any).
            k: results.
            weights: blend weights per task (default ``{"click": 0.5, "like": 0.5}``).
            adapter: a fitted cold-start adapter for the support path (default: no adaptation).
            exclude_seen: drop items the user already engaged with.
            fallback: for an unknown user, return flagged popular items instead of an error.
            history: a known user's engaged items to use instead of all their logged ones (e.g.
                only those before a test period).
        """
        start = time.perf_counter()
        weights = self._check_weights(weights)
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if (user_id is None) == (support is None):
            raise ConfigError("give exactly one of a user id or a new user's support set")
        if user_id is not None and not self.known_user(user_id):
            if not fallback:
                raise UnknownIdError(f"unknown user {user_id}: not among the {len(self.user_x)} users the ranker was "
                                     "trained on; pass their ratings as a new user, or allow the popular fallback")
            return self._popular(k, reason=f"unknown user {user_id}: most popular items", start=start)
        if support is not None:
            support = self._check_support(support)
        if history is not None:
            seen = [self._check_item(i) for i in history]
        else:
            seen = self.history.get(int(user_id), []) if user_id is not None else [i for i, _ in support]
        query = self._check_item(query_item) if query_item is not None else (seen[-1] if seen else None)
        # inference mode skips autograd's bookkeeping on every op; an adapter fine-tunes with
        # autograd, so its path runs under no_grad (it enables gradients where it needs them)
        adapting = support is not None and adapter is not None
        with _threads(self.threads), (torch.no_grad() if adapting else torch.inference_mode()):
            user_row = self._user_row(user_id, query)
            t0 = time.perf_counter()
            uvec = self.retriever.user_vectors(user_row[None].to(self.device),
                                               self._history_codes(seen)[None].to(self.device)).cpu().numpy()
            r_scores, rows = self.index.search(uvec, min(self.n_candidates + len(seen), len(self.item_ids)))
            t1 = time.perf_counter()
            rows, r_scores = rows[0], r_scores[0]  # rows of the catalogue, best first
            if exclude_seen and seen:
                keep = ~_isin(rows, np.searchsorted(self.item_ids, seen))
                rows, r_scores = rows[keep], r_scores[keep]
            rows, r_scores = rows[: self.n_candidates], r_scores[: self.n_candidates]
            preds = self._rank(user_row, rows, support, adapter)
            t2 = time.perf_counter()
        cand = self.item_ids[rows]
        blended = sum(w * blend_scale(t, preds[t]) for t, w in weights.items()) / sum(weights.values())
        order = np.argsort(-blended, kind="stable")[:k]
        top = {t: v[order].tolist() for t, v in preds.items()}
        items = [Recommendation(i, self.titles.get(i, ""), r + 1, b, s, {t: v[r] for t, v in top.items()})
                 for r, (i, b, s) in enumerate(zip(cand[order].tolist(), blended[order].tolist(),
                                                   r_scores[order].tolist()))]
        timings = {"retrieve": (t1 - t0) * 1e3, "rank": (t2 - t1) * 1e3, "total": (time.perf_counter() - start) * 1e3}
        return RecommendResult(items, list(zip(cand.tolist(), r_scores.tolist())), None, timings)

    def request_row(self, user_id: int) -> torch.Tensor:
        """A known user's request x [W] as `recommend` builds it: their fields and, as the query
        item, their last logged click (none when they have none)."""
        if not self.known_user(user_id):
            raise UnknownIdError(f"unknown user {user_id}: not among the {len(self.user_x)} users the ranker was "
                                 "trained on")
        seen = self.history.get(int(user_id), [])
        return self._user_row(user_id, seen[-1] if seen else None)

    def user_vector(self, user_id: int) -> np.ndarray:
        """A known user's retrieval vector [D] as `recommend` computes it (all their logged
        clicks as history)."""
        row = self.request_row(user_id)
        with _threads(self.threads), torch.no_grad():
            hist = self._history_codes(self.history.get(int(user_id), []))
            return self.retriever.user_vectors(row[None].to(self.device), hist[None].to(self.device)).cpu().numpy()[0]

    # ------------------------------------------------------------------ parts

    def _rank(self, user_row: torch.Tensor, rows: np.ndarray, support, adapter) -> dict[str, np.ndarray]:
        """Per-task predictions [N] of the candidates at catalogue `rows` [N]."""
        from recsys.mtl.losses import predict_proba

        rows = torch.from_numpy(rows)
        dev = self.device
        with torch.no_grad():
            if support is not None and adapter is not None:
                sx, sy = self.support_tensors(support)
                out = adapter.adapt(sx.to(dev), sy.to(dev))(self.tile(user_row, self.item_x[rows]).to(dev))
            else:  # the request part once, the candidate part per candidate
                out = self.ranker.score_candidates(user_row.to(dev), candidates=self.item_h.index_select(0, rows.to(dev)))
            preds = predict_proba(out, self.tasks, self.esmm)
        return {t: v.cpu().numpy().astype(np.float64) for t, v in preds.items()}

    def tile(self, row: torch.Tensor, x_items: torch.Tensor) -> torch.Tensor:
        """Full rows [N, W]: the candidates' item columns with the request row's other columns."""
        x = row.expand(len(x_items), -1).clone()
        x[:, self._item_cols] = x_items[:, self._item_cols]
        return x

    def support_tensors(self, support: list[tuple[int, float]], *, negatives: int = 4, seed: int = 0
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """A new user's ratings as an episode support set: each rated item (click 1, like
        rating >= 4, rating) with its query item = the previous rated item, plus `negatives`
        unrated items per rating (click 0), as in the training protocol."""
        rng = np.random.default_rng(seed)
        pool = np.setdiff1d(self.item_ids, np.array([i for i, _ in support], dtype=self.item_ids.dtype))
        xs, ys = [], []
        prev = None
        for item, rating in support:
            row = self._user_row(None, prev)
            for cand, label in [(item, rating)] + [(int(c), None) for c in rng.choice(pool, negatives, replace=False)]:
                x = row.clone()
                item_cols = self.item_x[int(np.searchsorted(self.item_ids, cand))]
                for f in self.schema.side("item"):
                    x[self.schema.slice(f.name)] = item_cols[self.schema.slice(f.name)]
                xs.append(x)
                ys.append(self._labels(label))
            prev = item
        return torch.stack(xs), torch.tensor(ys, dtype=torch.float32)

    def _labels(self, rating: float | None) -> list[float]:
        value = {"click": 0.0 if rating is None else 1.0,
                 "like": 0.0 if rating is None else float(rating >= 4),
                 "rating": float("nan") if rating is None else float(rating),
                 "watch": float("nan")}
        return [value[t] for t in self.schema.tasks if t in self.tasks]

    def _user_row(self, user_id: int | None, query: int | None) -> torch.Tensor:
        """x [W] with the user's fields (OOV for a new user) and the query item's fields."""
        if user_id is not None:
            x = torch.from_numpy(self.user_x[int(user_id)].copy())
        else:
            x = torch.zeros(self.schema.width, dtype=torch.long)
            for f in self.schema.side("user"):
                x[self.schema.slice(f.name)] = OOV if f.width == 1 else PAD
        if query is not None:
            item = self.item_x[int(np.searchsorted(self.item_ids, query))]
            x[self._query_dst] = item[self._query_src]
        return x

    def _history_codes(self, seen: list[int]) -> torch.Tensor:
        length = self.retriever.config.history
        codes = [self.item_code[i] for i in seen[-length:]]
        return torch.tensor([PAD] * (length - len(codes)) + codes, dtype=torch.long)

    def _popular(self, k: int, *, reason: str, start: float) -> RecommendResult:
        order = np.argsort(-self.popularity, kind="stable")[:k]
        items = [Recommendation(int(self.item_ids[i]), self.titles.get(int(self.item_ids[i]), ""), r + 1,
                                float(self.popularity[i]), 0.0, {}) for r, i in enumerate(order)]
        return RecommendResult(items, [], reason, {"total": (time.perf_counter() - start) * 1e3})

    def _check_weights(self, weights: dict[str, float] | None) -> dict[str, float]:
        weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        weights = {t: w for t, w in weights.items() if w != 0}
        for t, w in weights.items():
            if t not in self.tasks:
                raise ConfigError(f"blend weight for {t!r}, which the ranker does not predict ({', '.join(self.tasks)})")
            if not (w >= 0 and np.isfinite(w)):
                raise ConfigError(f"blend weight for {t!r} must be finite and >= 0, got {w}")
        if not weights:
            raise ConfigError("at least one blend weight must be > 0")
        return weights

    def _check_item(self, item_id: int) -> int:
        if int(item_id) not in self.titles:
            raise UnknownIdError(f"unknown item {item_id}: not in the catalogue of {len(self.item_ids)} items")
        return int(item_id)

    def _check_support(self, support: list[tuple[int, float]]) -> list[tuple[int, float]]:
        out = []
        for item, rating in support:
            self._check_item(item)
            if not 1 <= float(rating) <= 5:
                raise ConfigError(f"rating of item {item} must be in 1..5, got {rating}")
            out.append((int(item), float(rating)))
        return out


def _isin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.isin(a, b)``; for a short `b` (a history of a few dozen items) one broadcast
    comparison, a few times faster than `np.isin`'s sort."""
    if len(b) <= 64:
        return (a[:, None] == b[None, :]).any(1)
    return np.isin(a, b)


class _threads:
    def __init__(self, n: int) -> None:
        self.n, self.prev = n, torch.get_num_threads()

    def __enter__(self) -> None:
        if self.n != self.prev:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        if self.n != self.prev:
            torch.set_num_threads(self.prev)
