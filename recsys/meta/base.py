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

Shapes: S support rows, N candidate rows, W columns of x, T tasks.

Example:
    >>> adapter = build_adapter("finetune", ranker, esmm=False)           # doctest: +SKIP
    >>> adapter.fit(train_episodes, valid_episodes)                        # doctest: +SKIP
    >>> scorer = adapter.adapt(support_x, support_y)                       # doctest: +SKIP
    >>> scorer(candidates_x)["like"].shape                                 # doctest: +SKIP
    torch.Size([N])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from recsys.data.episodes import EpisodeSampler
from recsys.data.fields import OOV
from recsys.errors import ConfigError

#: A personalised model: candidate rows x [N, W] → {task: [N]} raw scores (as `Ranker.forward`).
Scorer = Callable[[torch.Tensor], dict[str, torch.Tensor]]


class Adapter(nn.Module):
    """Base class of the cold-start adapters.

    Subclasses set `name` and `defaults` (every accepted option with its default), implement
    `adapt`, and override `fit` when they learn or select something. Anything `fit` learns or
    selects is a parameter or buffer, so `state_dict()` saves it and a fitted adapter can be
    restored without refitting.

    Args:
        ranker: the trained ranker; it is frozen (``requires_grad_(False)``) and never modified.
        esmm: the ranker's like output is the logit of p(like | click) (see `recsys.mtl.losses`).
        **options: adapter options; an unknown key raises `ConfigError` naming it.
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
        self.ranker = ranker
        for p in self.ranker.parameters():
            p.requires_grad_(False)
        self.tasks: tuple[str, ...] = tuple(ranker.tasks)
        self.esmm = esmm
        user_field = "f_user_id"
        self.user_cols = ranker.schema.slice(user_field) if any(f.name == user_field for f in ranker.schema.fields) else None

    # ------------------------------------------------------------------ interface

    def fit(self, train: EpisodeSampler, valid: EpisodeSampler, *, log: Callable[[str], None] = print) -> Adapter:
        """Meta-train and/or select hyper-parameters.

        Args:
            train: episodes of warm users (their training rows) for meta-training.
            valid: episodes of validation new users, for selection and early stopping.
            log: progress lines.

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

    # ------------------------------------------------------------------ helpers

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
