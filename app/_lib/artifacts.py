"""Where the app's artifacts are, and loading them once per process.

The main-job directory (``runs/main`` unless ``--run DIR`` follows ``--`` on the streamlit
command line, or ``RECSYS_RUN`` is set) holds what the pages show; see `recsys.pipeline`.
Heavy objects (the Recommender, fitted adapters) are `st.cache_resource` singletons shared by all
sessions and never modified by one; files are `st.cache_data` (each caller gets its own copy),
keyed by path and modification time so a re-run of the main job is picked up without a restart.
Model calls go through one lock: the demo serves a room of people from one process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

DEFAULT_RUN = Path("runs/main")
SCRIPT = "streamlit_app.py"


def run_dir() -> Path:
    """The main-job directory: ``--run DIR`` (after ``--``), else ``$RECSYS_RUN``, else runs/main."""
    if sys.argv and Path(sys.argv[0]).name == SCRIPT:  # not under pytest's AppTest, whose argv is pytest's
        parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        parser.add_argument("--run", type=Path)
        args, _ = parser.parse_known_args(sys.argv[1:])
        if args.run:
            return args.run
    env = os.environ.get("RECSYS_RUN")
    return Path(env) if env else DEFAULT_RUN


# --------------------------------------------------------------------------- what is there


@dataclass(frozen=True)
class Status:
    run: Path
    models: bool          # ranker/ and retriever/ published
    ranker: bool
    retriever: bool

    @property
    def exists(self) -> bool:
        return self.run.is_dir()


def status(run: Path) -> Status:
    ranker = (run / "ranker" / "manifest.json").is_file()
    retriever = (run / "retriever" / "manifest.json").is_file()
    return Status(run, ranker and retriever, ranker, retriever)


def _stamp(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


# --------------------------------------------------------------------------- commands that make things


def _shown(run: Path) -> str:
    return str(run)


def main_job_command(run: Path) -> str:
    """The one command that makes the main job's artifacts in `run` (run.sh passes options on to `recsys run`)."""
    return "bash run.sh" if Path(run) == DEFAULT_RUN else f"bash run.sh --out {_shown(run)}"


def coldstart_command(run: Path) -> str:
    return f"recsys coldstart evaluate --run {_shown(run / 'ranker')} --out {_shown(run / 'eval' / 'coldstart')}"


def grid_command(run: Path) -> str:
    return f"recsys experiment grid --dataset ml-100k --out {_shown(run / 'experiments' / 'grid')}"


def affinity_command(run: Path) -> str:
    return f"recsys experiment affinity --dataset ml-100k --out {_shown(run / 'experiments' / 'affinity')}"


# --------------------------------------------------------------------------- files


@st.cache_data(show_spinner=False, max_entries=64)
def _read_json(path: str, stamp: float) -> Any:
    from recsys.errors import DataValidationError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataValidationError(f"{path} is not valid JSON ({exc}); run the command that writes it again") from None


def read_json(path: Path) -> Any | None:
    """A JSON artifact (a fresh copy each call), or None when it does not exist.

    Raises:
        DataValidationError: the file is not valid JSON (the message names it).
    """
    if not path.is_file():
        return None
    return _read_json(str(path), _stamp(path))


@st.cache_data(show_spinner=False, max_entries=64)
def _read_log(path: str, stamp: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from recsys.errors import DataValidationError
    from recsys.report import read_log

    try:
        return read_log(path)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataValidationError(f"{Path(path) / 'metrics.jsonl'} is not a training log ({type(exc).__name__}: "
                                  f"{exc}); train again or remove the file") from None


def read_log(run_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(step records, epoch records) of a training run's metrics.jsonl (empty when missing)."""
    return _read_log(str(run_path), _stamp(run_path / "metrics.jsonl"))


def grid_runs(run: Path) -> list[Path]:
    """Training runs of the weighting grid that have a metrics.jsonl."""
    root = run / "experiments" / "grid" / "runs"
    return sorted(p.parent for p in root.glob("*/metrics.jsonl")) if root.is_dir() else []


# --------------------------------------------------------------------------- models


@st.cache_resource(show_spinner=False)
def model_lock() -> threading.Lock:
    return threading.Lock()


@st.cache_resource(show_spinner="Loading the ranker and the retriever…", max_entries=4)
def _recommender(path: str, stamp: float):
    from recsys.serving import Recommender

    return Recommender(path)


def recommender(run: Path):
    """The process-wide `Recommender` of `run` (read-only: never modify it)."""
    return _recommender(str(run.resolve()), _stamp(run / "ranker" / "manifest.json"))


def adapter_names() -> list[str]:
    """The cold-start methods registered in `recsys.meta.registry.ADAPTERS` (none first)."""
    try:
        from recsys.meta.registry import ADAPTERS
    except Exception as exc:  # a half-finished adapter module must not take the page down
        print(f"app: cold-start registry unavailable: {exc!r}", file=sys.stderr)
        return ["none"]
    return ["none", *[n for n in ADAPTERS if n != "none"]]


@st.cache_resource(show_spinner="Loading the cold-start adapter…", max_entries=16)
def _adapter(path: str, stamp: float, name: str) -> tuple[Any | None, str]:
    rec = _recommender(path, stamp)
    return _build_adapter(Path(path), name, rec)


def _build_adapter(run: Path, name: str, rec) -> tuple[Any | None, str]:
    """(adapter or None, what it is / why it is not available)."""
    try:
        from recsys.meta import registry
    except Exception as exc:
        return (None, f"the cold-start adapters cannot be imported ({type(exc).__name__}: {exc})")
    if name == "none":
        return registry.build_adapter("none", rec.ranker, esmm=rec.esmm), "the global ranker, no adaptation"
    directory = run / "adapters" / name
    loader = getattr(registry, "load_adapter", None) or getattr(type(rec), "load_adapter", None)
    if (directory / "adapter.json").is_file() and loader is not None:
        try:
            adapter = loader(directory, rec.ranker)
            _warm_up(adapter, rec)
        except Exception as exc:
            print(f"app: loading adapter {directory}: {exc!r}", file=sys.stderr)
            return None, f"the fitted adapter in {directory} could not be loaded ({exc})"
        return adapter, f"fitted adapter from {directory}"
    if name == "finetune" and name in registry.ADAPTERS:
        # Fine-tuning needs no meta-training; unfitted, it uses its documented default grid point.
        return (registry.build_adapter("finetune", rec.ranker, esmm=rec.esmm),
                f"fine-tuning with default options (no fitted adapter in {directory}, so its learning rate and "
                "steps were not selected on validation users)")
    if loader is None:
        return None, "this build has no adapter loader (recsys.meta.registry.load_adapter)"
    return None, f"no fitted adapter in {directory}"


def _warm_up(adapter, rec) -> None:
    """Adapt once to a one-rating user when the adapter loads: torch's first call through a new
    code path costs ~0.9 s (measured for the black-box + MAML adapter; 6 ms afterwards), which
    the first viewer's "adaptation time" would otherwise show."""
    import numpy as np

    item = int(rec.item_ids[int(np.argmax(rec.popularity))])
    sx, sy = rec.support_tensors([(item, 4.0)])
    adapter.adapt(sx, sy)


def adapter(run: Path, name: str) -> tuple[Any | None, str]:
    """A process-wide cold-start adapter by name for `run`, or (None, why not)."""
    return _adapter(str(run.resolve()), _stamp(run / "ranker" / "manifest.json"), name)


class TimedAdapter:
    """Wraps an adapter to time `adapt` (the per-user adaptation) without touching it."""

    def __init__(self, inner) -> None:
        self.inner, self.ms = inner, None

    def adapt(self, support_x, support_y):
        start = time.perf_counter()
        scorer = self.inner.adapt(support_x, support_y)
        self.ms = (time.perf_counter() - start) * 1e3
        return scorer


# --------------------------------------------------------------------------- requests (cached per process)


@st.cache_data(show_spinner=False, max_entries=128)  # ~150 KB each (500 scored candidates)
def _full_request(path: str, stamp: float, user_id: int, query_item: int | None):
    rec = _recommender(path, stamp)
    with model_lock():
        return rec.recommend(user_id=user_id, query_item=query_item, k=len(rec.item_ids))


def full_request(run: Path, *, user_id: int, query_item: int | None):
    """A known user's request with k = every candidate, under the default blend: the page
    re-blends these per-task scores when the weights move, without retrieving or ranking again."""
    return _full_request(str(run.resolve()), _stamp(run / "ranker" / "manifest.json"), int(user_id),
                         None if query_item is None else int(query_item))


@st.cache_data(show_spinner=False, max_entries=64)
def _popular(path: str, stamp: float, user_id: int, k: int):
    rec = _recommender(path, stamp)
    return rec.recommend(user_id=user_id, k=k, fallback=True)


def popular_fallback(run: Path, *, user_id: int, k: int):
    """The flagged popular fallback for an unknown user."""
    return _popular(str(run.resolve()), _stamp(run / "ranker" / "manifest.json"), int(user_id), int(k))


def adapter_ready(run: Path, name: str) -> bool:
    """Cheap check (no loading) that `adapter` will give something for `name`."""
    return name in ("none", "finetune") or (run / "adapters" / name / "adapter.json").is_file()


@st.cache_data(show_spinner=False, max_entries=256)
def _new_user(path: str, stamp: float, support: tuple[tuple[int, float], ...], method: str | None, k: int):
    rec = _recommender(path, stamp)
    timed = None
    if method is not None:
        inner, _ = _adapter(path, stamp, method)
        timed = TimedAdapter(inner) if inner is not None else None
    with model_lock():
        result = rec.recommend(support=list(support), k=k, adapter=timed)
    return result, (timed.ms if timed is not None else None)


def new_user_request(run: Path, *, support: list[tuple[int, float]], method: str | None, k: int):
    """(RecommendResult, adaptation ms or None) for a new user; `method` None = no ratings used by
    an adapter (the global ranker), else an adapter `adapter(run, method)` gives."""
    return _new_user(str(run.resolve()), _stamp(run / "ranker" / "manifest.json"),
                     tuple((int(i), float(r)) for i, r in support), method, int(k))
