"""Training the two-tower retriever, measuring its recall, and publishing its item vectors.

Training rows are the clicks (positives) of the training split; each row's user tower reads the
user's features, the query item and the clicks of earlier events (`recsys.data.history`).
Validation recall@K (the held-out clicked item among the top K of the whole catalogue) picks
the best epoch. On a large catalogue `RetrieverConfig.max_seconds` bounds the training time and
`eval_rows` the rows recall is measured on (each row is an exact search over every item). The
published retriever is ``DIR/model.safetensors`` + ``manifest.json`` and
``DIR/item_vectors.safetensors`` (vectors [I, D] and raw item ids [I]): the saved vectors are
the source of truth an index is rebuilt from.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.checkpoint import load_published, publish
from recsys.data.history import recent_clicks
from recsys.data.tensors import TensorData, batch_indices, fields_to_x, load_schema, load_split
from recsys.errors import CheckpointError, ConfigError
from recsys.models.two_tower import TwoTower, build_two_tower, sampled_softmax_loss
from recsys.retrieval.base import exact_topk

VECTORS = "item_vectors.safetensors"


@dataclass(frozen=True)
class RetrieverConfig:
    """Options of retriever training.

    Attributes:
        epochs: maximum epochs; patience: epochs without a better validation recall before stopping.
        max_seconds: stop training once this much wall time has passed (0 = no limit); the epoch
            in progress ends early and is evaluated like a full one.
        eval_rows: validation / test rows recall is measured on, a seeded sample (0 = all).
    """

    epochs: int = 8
    batch_size: int = 1024
    lr: float = 3e-3
    patience: int = 2
    seed: int = 0
    eval_k: int = 100
    max_seconds: float = 0.0
    eval_rows: int = 0
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "eval_k"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"retriever option {name!r} must be an integer >= 1, got {getattr(self, name)!r}")
        if not isinstance(self.eval_rows, int) or self.eval_rows < 0:
            raise ConfigError(f"retriever option 'eval_rows' must be an integer >= 0, got {self.eval_rows!r}")
        if not self.lr > 0:
            raise ConfigError(f"retriever option 'lr' must be > 0, got {self.lr}")
        if not self.max_seconds >= 0:
            raise ConfigError(f"retriever option 'max_seconds' must be >= 0, got {self.max_seconds}")


@dataclass
class RetrievalData:
    """Clicked rows of the warm splits with their history, and the catalogue."""

    splits: dict[str, TensorData]       # train / valid / test, clicked rows only
    history: dict[str, torch.Tensor]    # [N, L] per split
    catalogue_x: torch.Tensor           # [I, W] item fields filled
    catalogue_ids: torch.Tensor         # [I] raw item ids
    item_col: int                       # column of f_item_id in x


def load_retrieval_data(prepared: str | Path, *, history: int) -> RetrievalData:
    """Read the warm splits, compute histories across them in event order, keep the clicks."""
    schema = load_schema(prepared)
    parts = {s: load_split(prepared, s) for s in ("train", "valid", "test")}
    item_col = schema.slice("f_item_id").start
    click = schema.task_index("click")
    allrows = {k: torch.cat([getattr(parts[s], k) for s in parts]) for k in ("user", "event")}
    items = torch.cat([parts[s].x[:, item_col] for s in parts])
    clicked = torch.cat([parts[s].y[:, click] == 1 for s in parts])
    hist_all = recent_clicks(allrows["user"], allrows["event"], items, clicked, length=history)
    splits, hist, start = {}, {}, 0
    for name, part in parts.items():
        n = len(part)
        keep = part.y[:, click] == 1
        splits[name] = part.subset(keep)
        hist[name] = hist_all[start:start + n][keep]
        start += n
    catalogue = pl.read_parquet(Path(prepared) / "items.parquet")
    cat_x = torch.from_numpy(fields_to_x(catalogue, schema, sides=("item",)))
    return RetrievalData(splits, hist, cat_x, torch.from_numpy(catalogue["item_id"].to_numpy().copy()), item_col)


@torch.no_grad()
def item_vectors(model: TwoTower, catalogue_x: torch.Tensor, *, batch: int = 65536) -> torch.Tensor:
    model.eval()
    return torch.cat([model.item_vectors(catalogue_x[s:s + batch]) for s in range(0, len(catalogue_x), batch)])


@torch.no_grad()
def recall_at(model: TwoTower, data: TensorData, history: torch.Tensor, vectors: np.ndarray, ids: np.ndarray,
              ks: tuple[int, ...]) -> dict[int, float]:
    """Fraction of rows whose clicked item is among the top-k of the whole catalogue."""
    model.eval()
    users = torch.cat([model.user_vectors(data.x[s:s + 8192], history[s:s + 8192]) for s in range(0, len(data), 8192)])
    _, rows = exact_topk(vectors, users.numpy().astype(np.float32), max(ks), threads=torch.get_num_threads())
    top = ids[rows]
    target = data.item.numpy()[:, None]
    return {k: float((top[:, :k] == target).any(1).mean()) for k in ks}


def train_retriever(prepared: str | Path, out_dir: str | Path, config: RetrieverConfig = RetrieverConfig(), *,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train, pick the best epoch by validation recall@eval_k, publish. Returns the summary."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    start_time = time.perf_counter()
    schema = load_schema(prepared)
    torch.manual_seed(config.seed)
    model = build_two_tower(schema, **config.model_options)
    data = load_retrieval_data(prepared, history=model.config.history)
    train = data.splits["train"]
    if len(train) == 0:
        raise ConfigError(f"{prepared}: the training split has no clicks to train a retriever on")
    item_ids = train.x[:, data.item_col]
    counts = torch.bincount(item_ids, minlength=schema.field("f_item_id").size).double()
    log_q = torch.log(counts / counts.sum()).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    ids_np = data.catalogue_ids.numpy()
    valid, valid_hist = _sample(data.splits["valid"], data.history["valid"], config.eval_rows, config.seed)
    best, best_state, bad, history = -1.0, None, 0, []
    out_of_time = False
    for epoch in range(config.epochs):
        model.train()
        total, steps = 0.0, 0
        for idx in batch_indices(len(train), config.batch_size, seed=config.seed, epoch=epoch):
            if config.max_seconds and time.perf_counter() - start_time > config.max_seconds:
                out_of_time = True
                break
            u = model.user_vectors(train.x[idx], data.history["train"][idx])
            v = model.item_vectors(train.x[idx])
            loss = sampled_softmax_loss(u, v, item_ids[idx], log_q[item_ids[idx]], model.config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + float(loss.detach()), steps + 1
        vectors = item_vectors(model, data.catalogue_x).numpy()
        rec = recall_at(model, valid, valid_hist, vectors, ids_np, (10, config.eval_k))
        history.append({"epoch": epoch, "loss": total / max(1, steps), "steps": steps, "valid_recall": rec})
        improved = rec[config.eval_k] > best
        if improved:
            best, best_state, bad = rec[config.eval_k], copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        log(f"retriever epoch {epoch}: loss {total / max(1, steps):.4f} valid recall@10 {rec[10]:.4f} "
            f"recall@{config.eval_k} {rec[config.eval_k]:.4f}" + (" (best)" if improved else ""))
        if bad >= config.patience or out_of_time:
            if out_of_time:
                log(f"retriever: stopped at the time limit of {config.max_seconds:.0f}s")
            break
    model.load_state_dict(best_state)
    vectors = item_vectors(model, data.catalogue_x)
    test_rows, test_hist = _sample(data.splits["test"], data.history["test"], config.eval_rows, config.seed)
    test = recall_at(model, test_rows, test_hist, vectors.numpy(), ids_np, (10, 50, 100, 500))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    from recsys.io import atomic_path

    with atomic_path(out / VECTORS) as tmp:
        save_file({"vectors": vectors.contiguous(), "ids": data.catalogue_ids.contiguous()}, str(tmp))
    summary = {"model": model.spec(), "config": asdict(config), "dataset": str(Path(prepared).resolve()),
               "history": history, "stopped_at_time_limit": out_of_time,
               "test_recall": {str(k): v for k, v in test.items()},
               "seconds": time.perf_counter() - start_time}
    publish(out, model.state_dict(), manifest=summary, extra_files=(VECTORS,))
    log(f"retriever: test recall@100 {test[100]:.4f}, recall@500 {test[500]:.4f}")
    return summary


def _sample(data: TensorData, history: torch.Tensor, rows: int, seed: int) -> tuple[TensorData, torch.Tensor]:
    """`rows` seeded random rows (all when 0), in their order, of a split and its history."""
    if not rows or rows >= len(data):
        return data, history
    keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:rows].sort().values
    return data.subset(keep), history[keep]


def load_retriever(directory: str | Path) -> tuple[TwoTower, np.ndarray, np.ndarray, dict[str, Any]]:
    """The published retriever: (model, item vectors [I, D] float32, raw item ids [I], manifest)."""
    from safetensors.torch import load_file

    manifest, state = load_published(directory)  # verifies the vectors' hash too
    schema_dir = Path(manifest["dataset"])
    if not (schema_dir / "schema.json").exists():
        raise CheckpointError(f"{directory}: its data set {schema_dir} is gone; prepare it again")
    model = build_two_tower(load_schema(schema_dir), **manifest["model"]["config"])
    model.load_state_dict(state)
    model.eval()
    saved = load_file(str(Path(directory) / VECTORS))
    return model, saved["vectors"].numpy(), saved["ids"].numpy(), manifest

