"""Cold-start adapters by name: one file each, one line here.

Example:
    >>> adapter = build_adapter("metasgd", ranker, esmm=True, steps=3)   # doctest: +SKIP
    >>> adapter.fit(warm_episodes, valid_episodes).save("runs/metasgd")  # doctest: +SKIP
    >>> same = load_adapter("runs/metasgd", ranker)                      # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from recsys.errors import CheckpointError, ConfigError
from recsys.meta.anil import ANIL
from recsys.meta.base import Adapter
from recsys.meta.blackbox import BlackBox
from recsys.meta.blackbox_maml import BlackBoxMAML
from recsys.meta.finetune import FineTune
from recsys.meta.fomaml import FOMAML
from recsys.meta.maml import MAML
from recsys.meta.metasgd import MetaSGD
from recsys.meta.none import NoAdaptation
from recsys.meta.proto import Prototypes

ADAPTERS: dict[str, type[Adapter]] = {
    cls.name: cls for cls in (NoAdaptation, FineTune, MAML, FOMAML, ANIL, MetaSGD, Prototypes, BlackBox,
                               BlackBoxMAML)
}


def build_adapter(name: str, ranker: nn.Module, *, esmm: bool = False, **options: Any) -> Adapter:
    """An adapter by name around a trained `ranker`; unknown names or options raise `ConfigError`."""
    if name not in ADAPTERS:
        raise ConfigError(f"unknown adapter {name!r}; known adapters: {', '.join(ADAPTERS)}")
    return ADAPTERS[name](ranker, esmm=esmm, **options)


def load_adapter(directory: str | Path, ranker: nn.Module) -> Adapter:
    """Rebuild an adapter written by `Adapter.save` around `ranker` (the ranker it was fitted on).

    Raises:
        CheckpointError: missing or unreadable files, or weights that do not fit the adapter.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    meta_path, weights_path = directory / "adapter.json", directory / "adapter.safetensors"
    for path in (meta_path, weights_path):
        if not path.exists():
            raise CheckpointError(f"{path} not found; save the fitted adapter with adapter.save({str(directory)!r})")
    try:
        meta = json.loads(meta_path.read_text())
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["options"].items()}
        adapter = build_adapter(meta["name"], ranker, esmm=bool(meta["esmm"]), **options)
        adapter.load_state_dict(load_file(str(weights_path)))
    except (KeyError, json.JSONDecodeError, RuntimeError) as exc:
        raise CheckpointError(f"{directory} does not hold an adapter for this ranker ({type(exc).__name__}: {exc})") from exc
    return adapter
