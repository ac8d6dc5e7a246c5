"""Rankers by name: one line per architecture.

Example:
    >>> from recsys.data.fields import Field, Schema
    >>> schema = Schema(fields=(Field("f_user_id", "user", "user", 10),
    ...                         Field("f_item_id", "item", "item", 20)), tasks=("click", "like"))
    >>> model = build_model("mmoe", schema, num_experts=2)
    >>> model.config.num_experts, model.tasks
    (2, ('click', 'like'))
    >>> build_from_spec(model.spec(), schema).config == model.config
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from recsys.data.fields import Schema
from recsys.errors import ConfigError
from recsys.models.base import Ranker, make_config
from recsys.models.independent import Independent
from recsys.models.mmoe import MMoE
from recsys.models.multi_head import MultiHead
from recsys.models.ple import PLE
from recsys.models.shared_bottom import SharedBottom
from recsys.models.task_conditioned import TaskAdd, TaskConcat, TaskMul

MODELS: dict[str, type[Ranker]] = {
    cls.name: cls for cls in (SharedBottom, Independent, MultiHead, MMoE, PLE, TaskConcat, TaskAdd, TaskMul)
}


def build_model(name: str, schema: Schema, tasks: Sequence[str] | None = None, **config: Any) -> Ranker:
    """Build the ranker called `name`.

    Args:
        name: one of `MODELS`: shared_bottom, independent, multi_head, mmoe, ple, task_concat,
            task_add, task_mul.
        schema: layout of `x`.
        tasks: tasks to predict (default: all of ``schema.tasks``).
        **config: fields of the model's config dataclass (e.g. ``dim=32, num_experts=8``).

    Returns:
        The model, in training mode.

    Raises:
        ConfigError: an unknown name, task or option, or a bad option value.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    cls = MODELS[name]
    return cls(schema, tasks, make_config(cls.config_class, config, model=name))


def build_from_spec(spec: Mapping[str, Any], schema: Schema) -> Ranker:
    """Rebuild a model from `Ranker.spec()` (e.g. read back from a checkpoint's JSON)."""
    missing = [k for k in ("name", "tasks", "config") if k not in spec]
    if missing:
        raise ConfigError(f"model spec lacks {missing}; expected the keys name, tasks, config")
    return build_model(spec["name"], schema, spec["tasks"], **spec["config"])
