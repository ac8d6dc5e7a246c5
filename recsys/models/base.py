"""What every multi-task ranker shares: config checking, embeddings, outputs, the bias tower.

A ranker maps the categorical inputs of an impression to one raw score per task,
`f(x) -> {task: [B]}`: a logit for binary tasks (click, like) and the predicted value for
regression tasks (rating, watch), see `recsys.data.fields.TASK_KINDS`. No loss is computed
inside `forward`; losses live beside the model and weighting strategies combine them.

Each architecture subclasses `Ranker`, declares a frozen dataclass config, and implements
`scores(h) -> [T, B]` from the flattened embeddings. The base class adds a learned per-task
output offset, and the position-bias tower of Zhao et al. (RecSys'19) to the click logit when
the data has slate positions and `position` is passed.

Serving scores many candidate items for one request with `score_candidates`: the request's
user, query and context fields are embedded once, and an architecture whose first layers read
the concatenated embeddings overrides `scores_split` to push that shared part through them once
(`recsys.models.layers.SplitInput`); the base `scores_split` tiles it instead.

Shapes: B batch, W columns of x, F fields, D embedding dim, T tasks.

Example:
    >>> class Linear(Ranker):  # a new architecture: a subclass plus a line in registry.MODELS
    ...     name = "linear"
    ...     def __init__(self, schema, tasks=None, config=None):
    ...         super().__init__(schema, tasks, config)
    ...         self.head = nn.Linear(self.in_dim, len(self.tasks))
    ...     def scores(self, h):  # [B, F*D] -> [T, B]
    ...         return self.head(h).t()
    ...     def shared_modules(self):
    ...         return ()  # only the embeddings are shared
    >>> from recsys.data.fields import Field, Schema
    >>> schema = Schema(fields=(Field("f_item_id", "item", "item", 20),), tasks=("click", "rating"))
    >>> Linear(schema)(torch.tensor([[4], [5]]))["rating"].shape
    torch.Size([2])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from recsys.data.fields import TASK_KINDS, Schema
from recsys.errors import ConfigError
from recsys.models.bias_tower import BiasTower
from recsys.models.embeddings import FeatureEmbedding
from recsys.models.layers import SplitInput

#: The engagement task whose logit receives the position bias.
BIAS_TASK = "click"
#: The sides of x a serving request shares over its candidates (the candidates are "item").
REQUEST_SIDES = ("user", "query", "context")


@dataclass(frozen=True)
class RankerConfig:
    """Options every ranker has.

    Attributes:
        dim: embedding size D of each field.
        dropout: dropout rate after each hidden layer (0 = off: the fastest).
        bias_tower: attach a position-bias tower when the schema has positions and click is a task.
        position_dropout: rate at which training rows' positions are hidden from the bias tower.
        bias_context: feed the context fields (device-like) to the bias tower as well.

    Checks (any field): ints >= 1; floats in [0, 1); tuples of ints >= 1, non-empty except
    ``tower_hidden`` (empty = a linear head). JSON lists are accepted for tuples.
    """

    dim: int = 16
    dropout: float = 0.0
    bias_tower: bool = True
    position_dropout: float = 0.1
    bias_context: bool = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, default = getattr(self, f.name), f.default
            if isinstance(default, tuple) and isinstance(value, list | tuple):
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                object.__setattr__(self, f.name, value)
            _check_option(type(self).__name__, f.name, value, default)


def _check_option(owner: str, name: str, value: Any, default: Any) -> None:
    def fail(want: str) -> None:
        raise ConfigError(f"option {name} of {owner} must be {want}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            fail("true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail("an integer >= 1")
    elif isinstance(default, float):
        if not isinstance(value, float) or not 0.0 <= value < 1.0:
            fail("a number in [0, 1)")
    elif isinstance(default, tuple):
        if not isinstance(value, tuple) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                               for v in value):
            fail("a list of integers >= 1")
        if not value and name != "tower_hidden":
            fail("a non-empty list of integers >= 1")
    elif isinstance(default, str) and not isinstance(value, str):
        fail("a string")


def make_config(config_class: type[RankerConfig], options: Mapping[str, Any], *, model: str) -> RankerConfig:
    """Build a config from keyword options, naming any unknown key.

    Raises:
        ConfigError: an unknown key or a bad value.
    """
    known = [f.name for f in dataclasses.fields(config_class)]
    for key in options:
        if key not in known:
            raise ConfigError(f"unknown option {key!r} for model {model!r}; known options: {', '.join(known)}")
    return config_class(**options)


class Ranker(nn.Module):
    """Base of the multi-task rankers.

    Args:
        schema: layout of `x`.
        tasks: task names to predict (default: all of ``schema.tasks``); one task gives a
            single-task model.
        config: the architecture's config (default: its defaults).

    Attributes:
        tasks: the task names, in output order.
        embedding: the `FeatureEmbedding` shared by all tasks.
        bias_tower: the `BiasTower` added to the click logit, or None.
        output_bias: [T] learned per-task offset (see `init_output_bias`).

    Shapes:
        x [B, W] int, position [B] int → {task: [B]}
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[RankerConfig]] = RankerConfig

    def __init__(self, schema: Schema, tasks: Sequence[str] | None = None, config: RankerConfig | None = None) -> None:
        super().__init__()
        self.tasks = _check_tasks(schema, tasks)
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                              f"got {type(self.config).__name__}")
        self.schema = schema
        self.embedding = FeatureEmbedding(schema, self.config.dim)
        self.output_bias = nn.Parameter(torch.zeros(len(self.tasks)))
        self._split_cache: tuple[torch.Tensor, slice | torch.Tensor] | None = None  # see `_split_layout`
        self.bias_tower: BiasTower | None = None
        if self.config.bias_tower and schema.num_positions > 0 and BIAS_TASK in self.tasks:
            context = [f.name for f in schema.side("context")] if self.config.bias_context else []
            index = [self.embedding.fields.index(name) for name in context]
            self.register_buffer("_context_index", torch.tensor(index, dtype=torch.long), persistent=False)
            self.bias_tower = BiasTower(schema.num_positions, context_dim=len(index) * self.config.dim,
                                        position_dropout=self.config.position_dropout)

    @property
    def in_dim(self) -> int:
        """Width F * D of the flattened embeddings that `scores` receives."""
        return self.embedding.out_dim

    def forward(self, x: torch.Tensor, position: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-task raw scores.

        Args:
            x: [B, W] integer ids.
            position: [B] slate positions (1-based, 0 = unknown) during training; None at serving,
                which leaves the position bias out. Ignored by a model without a bias tower.

        Returns:
            ``{task: [B]}``: logits for binary tasks, predicted values for regression tasks.
        """
        return self.forward_embedded(self.embedding(x), position)

    def forward_embedded(self, e: torch.Tensor, position: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`forward` from embeddings [B, F, D] (e.g. joined by `FeatureEmbedding.merge`)."""
        if e.dim() != 3 or e.shape[1:] != (len(self.embedding.fields), self.embedding.dim):
            raise ValueError(f"embeddings must have shape [B, {len(self.embedding.fields)}, "
                             f"{self.embedding.dim}], got {tuple(e.shape)}")
        out = self.scores(e.flatten(1)) + self.output_bias.unsqueeze(1)  # [T, B]
        result = dict(zip(self.tasks, out.unbind(0)))
        if position is not None and self.bias_tower is not None:
            if position.shape != (e.shape[0],):
                raise ValueError(f"position must have shape [{e.shape[0]}] (one per row of x), "
                                 f"got {tuple(position.shape)}")
            context = e.index_select(1, self._context_index).flatten(1) if self.bias_tower.context_dim else None
            result[BIAS_TASK] = result[BIAS_TASK] + self.bias_tower(position, context)
        return result

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Raw scores before the output offset: [B, F*D] → [T, B]."""
        raise NotImplementedError

    def score_candidates(self, request_x: torch.Tensor, candidate_x: torch.Tensor | None = None, *,
                         candidates: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-task raw scores of B candidate items for one request (no position: serving).

        Equal to ``forward(x)`` on the tiled rows x[b] = the request's user / query / context
        columns + candidate b's item columns, but the request part is embedded (and, where the
        architecture allows, pushed through the first layer) once instead of B times.

        Args:
            request_x: [W] or [1, W] ids; only its user, query and context columns are read.
            candidate_x: [B, W] ids; only the item columns are read.
            candidates: instead of `candidate_x`, the candidates' `embed_candidates` rows
                [B, F_c*D] (a server can compute them once for its whole catalogue).

        Returns:
            ``{task: [B]}`` as `forward`.
        """
        if request_x.dim() == 1:
            request_x = request_x.unsqueeze(0)
        if request_x.dim() != 2 or request_x.shape[0] != 1:
            raise ValueError(f"request_x must be one row [W] or [1, W], got shape {tuple(request_x.shape)}")
        if (candidate_x is None) == (candidates is None):
            raise ValueError("give exactly one of candidate_x (ids) or candidates (their embed_candidates rows)")
        if candidates is None:
            candidates = self.embed_candidates(candidate_x)
        elif candidates.dim() != 2 or candidates.shape[1] != self._candidate_width():
            raise ValueError(f"candidates must be embed_candidates rows [B, {self._candidate_width()}], "
                             f"got shape {tuple(candidates.shape)}")
        out = self.scores_split(self.split_input(request_x, candidates)) + self.output_bias.unsqueeze(1)  # [T, B]
        return dict(zip(self.tasks, out.unbind(0)))

    def embed_candidates(self, candidate_x: torch.Tensor) -> torch.Tensor:
        """The per-candidate input of `score_candidates`: the item fields' embeddings, flattened.

        Args:
            candidate_x: [B, W] ids; only the item columns are read.

        Returns:
            [B, F_c*D] (F_c item fields).
        """
        return self.embedding.embed(candidate_x, ("item",)).flatten(1)

    def split_input(self, request_x: torch.Tensor, candidates: torch.Tensor) -> SplitInput:
        """The flattened embeddings of the tiled rows, kept as (request [1, F*D], candidates [B, F_c*D]).

        Args:
            request_x: [1, W] ids (user, query and context columns read).
            candidates: [B, F_c*D] `embed_candidates` rows.
        """
        emb, dim = self.embedding, self.embedding.dim
        request_pos, candidate_cols = self._split_layout()
        shared = emb.embed(request_x, REQUEST_SIDES)  # [1, F_r, D]
        request = shared.new_zeros(1, len(emb.fields), dim).index_copy_(1, request_pos, shared)
        return SplitInput(request.view(1, -1), candidates, candidate_cols)

    def _candidate_width(self) -> int:
        return len(self.embedding.field_order(("item",))) * self.embedding.dim

    def scores_split(self, h: SplitInput) -> torch.Tensor:
        """`scores` of ``h.full()``: [T, B]. This default tiles the request part; architectures
        whose first layers read h override it to compute that part once."""
        return self.scores(h.full())

    def _split_layout(self) -> tuple[torch.Tensor, slice | torch.Tensor]:
        """(F axis positions of the request fields, flattened columns of the candidate fields)."""
        layout, device = self._split_cache, self.embedding.weight.device
        if layout is None or layout[0].device != device:
            emb, dim = self.embedding, self.embedding.dim
            request_pos = [emb.fields.index(n) for n in emb.field_order(REQUEST_SIDES)]
            item_pos = [emb.fields.index(n) for n in emb.field_order(("item",))]
            cols = [p * dim + d for p in item_pos for d in range(dim)]
            first = cols[0] if cols else 0
            if cols == list(range(first, first + len(cols))):  # one block: the weights are read as views
                candidate_cols: slice | torch.Tensor = slice(first, first + len(cols))
            else:
                candidate_cols = torch.tensor(cols, dtype=torch.long, device=device)
            layout = (torch.tensor(request_pos, dtype=torch.long, device=device), candidate_cols)
            self._split_cache = layout
        return layout

    def pack_cpu(self, enabled: bool = True) -> int:
        """Serve CPU float32 inference of the MLP layers through oneDNN with pre-packed weights
        (`recsys.models.onednn`): about twice torch's matmul rate on AMD CPUs. Training, autograd,
        ``torch.func`` adaptation and other devices keep the plain path; packs follow optimiser
        steps. ``enabled=False`` drops the packs. Returns the number of networks packed (0 where
        oneDNN is missing)."""
        from recsys.models import onednn

        if enabled and not onednn.available():
            return 0
        networks = [m for m in self.modules() if hasattr(m, "pack_cpu") and m is not self]
        for m in networks:
            m.pack_cpu(enabled)
        return len(networks) if enabled else 0

    def shared_modules(self) -> Iterable[nn.Module]:
        """Modules, beyond the embeddings, whose parameters more than one task depends on."""
        return ()

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters shared across tasks (embeddings + shared trunk or experts), in a stable order.

        These are what gradient-balancing methods (GradNorm, PCGrad, MGDA) and the per-task
        gradient-cosine diagnostic act on. Every other parameter (towers, gates, heads, output
        offsets, the bias tower) receives, element by element, the gradient of one task only.
        """
        params = list(self.embedding.parameters())
        for module in self.shared_modules():
            params += [p for p in module.parameters() if all(p is not q for q in params)]
        return params

    def task_parameters(self) -> list[nn.Parameter]:
        """All parameters not in `shared_parameters` (task towers, gates, heads, bias tower)."""
        shared = {id(p) for p in self.shared_parameters()}
        return [p for p in self.parameters() if id(p) not in shared]

    @torch.no_grad()
    def init_output_bias(self, values: Mapping[str, float]) -> None:
        """Start task outputs at sensible values, e.g. the click log-odds or the mean rating.

        Args:
            values: ``{task: raw score}``; tasks not named keep their offset.
        """
        for task, value in values.items():
            if task not in self.tasks:
                raise ConfigError(f"init_output_bias: {task!r} is not a task of this model ({', '.join(self.tasks)})")
            self.output_bias[self.tasks.index(task)] = float(value)

    def spec(self) -> dict[str, Any]:
        """JSON-able ``{"name", "tasks", "config"}`` that `recsys.models.build_from_spec` rebuilds."""
        return {"name": self.name, "tasks": list(self.tasks), "config": dataclasses.asdict(self.config)}


def _check_tasks(schema: Schema, tasks: Sequence[str] | None) -> tuple[str, ...]:
    tasks = tuple(schema.tasks if tasks is None else tasks)
    if not tasks:
        raise ConfigError("a ranker needs at least one task; the schema and the tasks option name none")
    for task in tasks:
        if task not in TASK_KINDS:
            raise ConfigError(f"unknown task {task!r}; known tasks: {', '.join(TASK_KINDS)}")
    if schema.tasks and not set(tasks) <= set(schema.tasks):
        missing = [t for t in tasks if t not in schema.tasks]
        raise ConfigError(f"task(s) {missing} have no labels in data set {schema.dataset or ''}; "
                          f"it has {', '.join(schema.tasks)}")
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"tasks {list(tasks)} name a task twice")
    return tasks
