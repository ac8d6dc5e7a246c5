"""Cold-start adapters by name: one file each, one line here."""

from __future__ import annotations

from typing import Any

from torch import nn

from recsys.errors import ConfigError
from recsys.meta.base import Adapter
from recsys.meta.none import NoAdaptation

ADAPTERS: dict[str, type[Adapter]] = {
    "none": NoAdaptation,
}


def build_adapter(name: str, ranker: nn.Module, *, esmm: bool = False, **options: Any) -> Adapter:
    """An adapter by name around a trained `ranker`; unknown names raise `ConfigError`."""
    if name not in ADAPTERS:
        raise ConfigError(f"unknown adapter {name!r}; known adapters: {', '.join(ADAPTERS)}")
    return ADAPTERS[name](ranker, esmm=esmm, **options)
