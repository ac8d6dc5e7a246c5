"""The one interface of every cold-start adapter: a new user is a task.

An adapter wraps the *trained* multi-task ranker (the one serving uses) and personalises it
from a new user's support set: their first K interactions (items with click / like / rating
labels). `adapt` returns a `Scorer`, a function from candidate rows to per-task raw scores,
exactly like the ranker's own outputs. Adapting never changes the ranker's parameters (the
adapted ones are functional copies, evaluated with `torch.func.functional_call`), and an empty
support set (K = 0) gives exactly the ranker's scores.

Protocol (CS330 / Finn et al. ICML'17): train and test conditions match. Meta-training episodes
come from warm users' training rows and test episodes from the held-out new users; in both,
the user-id field is replaced by OOV, because a new user has no id embedding. Hyper-parameters
(inner learning rates, steps, layers) are selected on *validation* new users, never hard-coded.

Invalid input: `adapt` checks the support set first (`check_support`): a wrong width, a wrong
label count, a non-integer x, ids outside a vocabulary or infinite labels raise `ValueError` /
`UnknownIdError` naming the problem. NaN labels are *missing* labels and are fine. If adaptation
itself goes non-finite (an exploding inner loop), the user falls back to the ranker's own scores
with a `RuntimeWarning`, and `fallbacks` counts such users.

Persistence: everything `fit` learns or selects is in `state_dict()` (the ranker is not part of
it); `save(directory)` writes ``adapter.json`` (name, esmm, options) and ``adapter.safetensors``,
and `recsys.meta.registry.load_adapter(directory, ranker)` rebuilds the fitted adapter. Adapters
that meta-train accept ``fit(..., checkpoint=path, resume=True, stop_after=N)``: an atomic
checkpoint to resume an interrupted meta-training run exactly.

Shapes: S support rows, N candidate rows, W columns of x, T tasks.

Example:
    >>> adapter = build_adapter("finetune", ranker, esmm=False)           # doctest: +SKIP
    >>> adapter.fit(train_episodes, valid_episodes)                        # doctest: +SKIP
    >>> scorer = adapter.adapt(support_x, support_y)                       # doctest: +SKIP
    >>> scorer(candidates_x)["like"].shape                                 # doctest: +SKIP
    torch.Size([N])
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from recsys.data.episodes import EpisodeSampler
from recsys.data.fields import OOV, TASK_KINDS
from recsys.errors import ConfigError
from recsys.meta.selection import EvalEpisodes

#: A personalised model: candidate rows x [N, W] → {task: [N]} raw scores (as `Ranker.forward`).
Scorer = Callable[[torch.Tensor], dict[str, torch.Tensor]]

USER_FIELD = "f_user_id"


class Adapter(nn.Module):
    """Base class of the cold-start adapters.

    Subclasses set `name` and `defaults` (every accepted option with its default), implement
    `adapt`, and override `fit` when they learn or select something. Anything `fit` learns or
    selects is a parameter or buffer, so `state_dict()` saves it and a fitted adapter can be
    restored without refitting. The ranker is *not* a submodule: `state_dict()` holds only what
    the adapter learned, and loading one never touches the ranker.

    Args:
        ranker: the trained ranker; it is frozen (``requires_grad_(False)``) and never modified.
        esmm: the ranker's like output is the logit of p(like | click) (see `recsys.mtl.losses`).
        **options: adapter options; an unknown key raises `ConfigError` naming it.

    Attributes:
        fallbacks: users whose adaptation went non-finite and who got the ranker's scores.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, ranker: nn.Module, *, esmm: bool = False, **options: Any) -> None:
        super().__init__()
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise ConfigError(f"unknown option(s) {unknown} for adapter {self.name!r} (known: {known})")
        self.options: dict[str, Any] = {**self.defaults, **options}
        object.__setattr__(self, "ranker", ranker)  # not a submodule: never in state_dict / parameters()
        for p in self.ranker.parameters():
            p.requires_grad_(False)
        self.tasks: tuple[str, ...] = tuple(ranker.tasks)
        if esmm and not {"click", "like"} <= set(self.tasks):
            raise ConfigError(f"esmm=True needs tasks 'click' and 'like', the ranker has {list(self.tasks)}")
        self.esmm = esmm
        schema = ranker.schema
        self.user_cols = schema.slice(USER_FIELD) if any(f.name == USER_FIELD for f in schema.fields) else None
        self.fallbacks = 0

    @property
    def device(self) -> torch.device:
        """Where the ranker lives; adapters adapt and score there (inputs are moved by the caller)."""
        return next(self.ranker.parameters()).device

    # ------------------------------------------------------------------ interface

    def fit(self, train: EpisodeSampler, valid: EpisodeSampler, *, log: Callable[[str], None] = print,
            checkpoint: str | Path | None = None, resume: bool = False, stop_after: int | None = None
            ) -> Adapter:
        """Meta-train and/or select hyper-parameters.

        Args:
            train: episodes of warm users (their training rows) for meta-training.
            valid: episodes of validation new users, for selection and early stopping.
            log: progress lines.
            checkpoint: file for an atomic meta-training checkpoint (adapters that meta-train).
            resume: continue from `checkpoint` if it exists.
            stop_after: stop after this many meta-steps (leaving the checkpoint to resume from).

        Returns:
            self.
        """
        return self

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> Scorer:
        """Personalise from one user's support set.

        Args:
            support_x: [S, W] inputs of the user's first K interactions (S may be 0).
            support_y: [S, T] their labels in the ranker's task order (NaN = missing).

        Returns:
            A `Scorer` for this user; with S = 0 it returns the ranker's own scores.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> None:
        """Write ``adapter.json`` (name, esmm, options) and ``adapter.safetensors`` (state_dict)."""
        from safetensors.torch import save_file

        from recsys.io import atomic_path, atomic_write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / "adapter.safetensors") as tmp:
            save_file(tensors, str(tmp))
        atomic_write_json(directory / "adapter.json", {"name": self.name, "esmm": self.esmm,
                                                       "options": _jsonable(self.options)})

    # ------------------------------------------------------------------ helpers

    def check_support(self, support_x: torch.Tensor, support_y: torch.Tensor) -> None:
        """Raise a clear error for a support set the adapter cannot use.

        Raises:
            ValueError: not tensors, wrong rank / width / label count / row counts, non-integer x,
                infinite labels, or binary labels other than 0, 1 or NaN.
            UnknownIdError: an id outside its field's vocabulary.
        """
        width, n_tasks = self.ranker.schema.width, len(self.tasks)
        if not isinstance(support_x, torch.Tensor) or not isinstance(support_y, torch.Tensor):
            raise ValueError(f"support_x and support_y must be tensors, got {type(support_x).__name__} "
                             f"and {type(support_y).__name__}")
        if support_x.dim() != 2 or support_x.shape[1] != width:
            raise ValueError(f"support_x must have shape [S, {width}] (the schema's {width} columns), "
                             f"got {tuple(support_x.shape)}")
        if support_x.dtype not in (torch.int64, torch.int32):
            bad = " (it holds non-finite values)" if support_x.is_floating_point() and not bool(
                torch.isfinite(support_x).all()) else ""
            raise ValueError(f"support_x must hold integer ids (int64), got dtype {support_x.dtype}{bad}")
        if support_y.dim() != 2 or support_y.shape[1] != n_tasks:
            raise ValueError(f"support_y must have shape [S, {n_tasks}] (tasks {list(self.tasks)}), "
                             f"got {tuple(support_y.shape)}")
        if support_y.shape[0] != support_x.shape[0]:
            raise ValueError(f"support_x has {support_x.shape[0]} rows but support_y has {support_y.shape[0]}")
        if not support_y.is_floating_point():
            raise ValueError(f"support_y must be a float tensor (NaN = missing), got dtype {support_y.dtype}")
        if bool(torch.isinf(support_y).any()):
            task = self.tasks[int(torch.isinf(support_y).any(0).nonzero()[0, 0])]
            raise ValueError(f"support_y holds an infinite label for task {task!r}; use NaN for a missing label")
        for j, task in enumerate(self.tasks):
            col = support_y[:, j]
            if TASK_KINDS[task] == "binary" and bool(((col != 0) & (col != 1) & ~torch.isnan(col)).any()):
                raise ValueError(f"support_y: labels of binary task {task!r} must be 0, 1 or NaN")
        if len(support_x):
            emb = self.ranker.embedding
            was, emb.check_ids = emb.check_ids, True
            try:
                with torch.no_grad():
                    emb.embed(support_x)  # raises UnknownIdError naming the field and the id
            finally:
                emb.check_ids = was

    def as_new_user(self, x: torch.Tensor) -> torch.Tensor:
        """`x` with the user-id field set to OOV (a new user has no id embedding)."""
        if self.user_cols is None:
            return x
        x = x.clone()
        x[..., self.user_cols] = OOV
        return x

    def base_scorer(self) -> Scorer:
        """The unadapted ranker as a `Scorer` (evaluation mode, no position bias)."""
        ranker = self.ranker

        def score(x: torch.Tensor) -> dict[str, torch.Tensor]:
            with torch.no_grad():
                was = ranker.training
                ranker.eval()
                out = ranker(x)
                ranker.train(was)
            return out

        return score

    def fallback(self, reason: str) -> Scorer:
        """Count a user whose adaptation failed, warn, and return the ranker's own scorer."""
        self.fallbacks += 1
        warnings.warn(f"adapter {self.name!r}: {reason}; this user gets the unadapted ranker's scores "
                      f"({self.fallbacks} fallback(s) so far)", RuntimeWarning, stacklevel=3)
        return self.base_scorer()

    def validation_episodes(self, valid: EpisodeSampler) -> EvalEpisodes:
        """The validation new users' episodes that selection and early stopping score (query rows
        after option ``query_after`` events), on the ranker's device."""
        return EvalEpisodes(valid, self.tasks, query_after=int(self.options["query_after"]), device=self.device)

    def task_columns(self, sampler: EpisodeSampler) -> torch.Tensor:
        """Columns of a sampler's labels (schema order) that give the ranker's task order."""
        schema_tasks = tuple(sampler.data.schema.tasks)
        missing = [t for t in self.tasks if t not in schema_tasks]
        if missing:
            raise ConfigError(f"episodes have no labels for task(s) {missing} of the ranker "
                              f"(they have {list(schema_tasks)})")
        return torch.tensor([schema_tasks.index(t) for t in self.tasks], dtype=torch.long)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in options.items():
        out[k] = list(v) if isinstance(v, tuple) else v
    json.dumps(out)  # fail here, not half-way through a write
    return out
