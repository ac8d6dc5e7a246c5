"""Indexes by name: one file each, one line here."""

from __future__ import annotations

from typing import Any

from recsys.errors import ConfigError
from recsys.retrieval.base import VectorIndex
from recsys.retrieval.flat import FlatIndex
from recsys.retrieval.hnsw import HNSWIndex
from recsys.retrieval.ivf_flat import IVFFlatIndex
from recsys.retrieval.ivf_pq import IVFPQIndex
from recsys.retrieval.ivf_sq import IVFSQIndex

INDEXES: dict[str, type[VectorIndex]] = {
    "flat": FlatIndex,
    "ivf_flat": IVFFlatIndex,
    "hnsw": HNSWIndex,
    "ivf_pq": IVFPQIndex,
    "ivf_sq": IVFSQIndex,
}


def build_index(name: str, dim: int, **params: Any) -> VectorIndex:
    """An empty index by name; `build()` fills it. Unknown names raise `ConfigError`."""
    if name not in INDEXES:
        raise ConfigError(f"unknown index {name!r}; known indexes: {', '.join(INDEXES)}")
    return INDEXES[name](dim, **params)
