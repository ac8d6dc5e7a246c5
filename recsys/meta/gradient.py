"""What the MAML family shares: a meta-learned initialisation and learned inner learning rates.

`GradientAdapter` adapts the tensors of a scope (see `recsys.meta.functional`) by `steps` SGD
steps on the support loss (`recsys.meta.inner_loop`), starting from a meta-learned
initialisation θ_0 (``init.*``, initialised from the trained ranker's values; the user vector
from the OOV row) with learned inner learning rates (``log_lr.*``: one per tensor, or one per
element for Meta-SGD; learned in log space, so they stay positive). The rest of the ranker is
frozen. `maml`, `fomaml`, `anil` and `metasgd` are this class with other defaults.

The support loss is summed over the support rows (option ``reduction``), so a user with 20
events moves further from θ_0 than a user with one: with a mean, every K takes steps of the
same size and K = 1 over-fits (measured on MovieLens: it then does harm).

`fit`:
  1. selects the starting inner learning rate on the validation new users (the grid `lr_grid`,
     fine-tuning the scope from the ranker's values at K = `valid_k`): a hand-fixed inner rate
     is what makes MAML collapse;
  2. meta-trains θ_0 and the rates on warm users' episodes (`recsys.meta.meta_training`),
     early-stopped on validation like AUC at K = `valid_k`.

Shapes: U users, S support rows, Q query rows, F fields, D embedding dim, T tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from recsys.data.episodes import EpisodeBatch, EpisodeSampler
from recsys.errors import ConfigError
from recsys.meta.base import Adapter, Scorer
from recsys.meta.functional import FunctionalRanker, Params, episode_loss
from recsys.meta.inner_loop import all_finite, inner_loop
from recsys.meta.meta_training import MetaSchedule, MetaTrainer
from recsys.meta.selection import EvalEpisodes, batch_tensors

#: Options every member of the family has (subclasses change some defaults).
GRADIENT_DEFAULTS: dict[str, Any] = {
    "scope": "user+last",        # what adapts (recsys.meta.functional)
    "steps": 3,                  # inner steps
    "first_order": False,        # FOMAML: no second-order term
    "per_element_lr": False,     # Meta-SGD: one rate per element instead of per tensor
    "learn_lr": True,            # meta-learn the inner rates (else keep the selected one)
    "lr_grid": (0.001, 0.003, 0.01, 0.03, 0.1),  # candidates for the starting inner rate
    "clip": 10.0,                # global-norm clip of each inner gradient
    "reduction": "sum",          # support loss summed over rows: 20 events move θ further than 1
    "valid_k": 5,                # K at which validation users select and early-stop
    "query_after": 20,           # validation query rows: events after the first 20
    "meta_lr": 3e-3, "meta_batch": 32, "steps_per_epoch": 50, "max_epochs": 10, "patience": 2,
    "shots": (1, 3, 5, 10, 20), "max_query": 100, "seed": 0, "checkpoint_every": 25,
    "chunk": 64,                 # users per vmap call when validating
}


def _key(name: str) -> str:
    return name.replace(".", "__")


class GradientAdapter(Adapter):
    """Meta-learned initialisation + inner learning rates over a scope of the ranker (see module doc).

    Args:
        ranker: the trained ranker (frozen).
        esmm: the ranker's like output is conditional on click.
        **options: see `GRADIENT_DEFAULTS`.
    """

    defaults = GRADIENT_DEFAULTS

    def __init__(self, ranker: nn.Module, *, esmm: bool = False, **options: Any) -> None:
        super().__init__(ranker, esmm=esmm, **options)
        o = self.options
        if int(o["steps"]) < 1:
            raise ConfigError(f"option steps of adapter {self.name!r} must be >= 1, got {o['steps']}")
        if o["reduction"] not in ("mean", "sum"):
            raise ConfigError(f"option reduction must be 'mean' or 'sum', got {o['reduction']!r}")
        if not o["lr_grid"] or any(not (float(v) > 0) for v in o["lr_grid"]):
            raise ConfigError(f"option lr_grid must be positive learning rates, got {o['lr_grid']!r}")
        self.schedule = MetaSchedule(lr=float(o["meta_lr"]), batch=int(o["meta_batch"]),
                                     steps_per_epoch=int(o["steps_per_epoch"]), max_epochs=int(o["max_epochs"]),
                                     patience=int(o["patience"]), shots=tuple(int(k) for k in o["shots"]),
                                     max_query=int(o["max_query"]), seed=int(o["seed"]),
                                     checkpoint_every=int(o["checkpoint_every"]))
        self.fr = FunctionalRanker(ranker)
        self.names = self.fr.scope_names(o["scope"])
        start = self.fr.initial(self.names)
        self.init = nn.ParameterDict({_key(n): nn.Parameter(v) for n, v in start.items()})
        lr0 = math.log(float(o["lr_grid"][0]))
        self.log_lr = nn.ParameterDict({
            _key(n): nn.Parameter(torch.full_like(v, lr0) if o["per_element_lr"] else torch.tensor(lr0),
                                  requires_grad=bool(o["learn_lr"]))
            for n, v in start.items()})
        self.register_buffer("fitted", torch.tensor(False))

    # ------------------------------------------------------------------ the adapted tensors

    def initial_params(self) -> Params:
        """θ_0 by ranker parameter name."""
        return {n: self.init[_key(n)] for n in self.names}

    def inner_lrs(self) -> dict[str, Tensor]:
        """The inner learning rates α (positive) by ranker parameter name."""
        return {n: self.log_lr[_key(n)].exp() for n in self.names}

    def adapt_params(self, e: Tensor, y: Tensor, mask: Tensor) -> Params:
        """θ after the inner loop on one user's support rows (e [S, F, D], y [S, T], mask [S])."""
        o = self.options
        return inner_loop(self.fr, self.initial_params(), self.inner_lrs(), e, y, mask, steps=int(o["steps"]),
                          esmm=self.esmm, first_order=bool(o["first_order"]), clip=float(o["clip"]),
                          reduction=o["reduction"])

    # ------------------------------------------------------------------ interface

    def adapt(self, support_x: Tensor, support_y: Tensor) -> Scorer:
        self.check_support(support_x, support_y)
        if len(support_x) == 0:
            return self.base_scorer()
        with torch.no_grad(), self.fr.eval_mode():
            e = self.fr.embed(support_x)
            mask = torch.ones(len(e), dtype=torch.bool, device=e.device)
            params = self.adapt_params(e, support_y.to(e.dtype), mask)
        if not bool(all_finite(params)):
            return self.fallback("the inner loop went non-finite")
        return self.fr.scorer(params)

    def fit(self, train: EpisodeSampler, valid: EpisodeSampler, *, log: Callable[[str], None] = print,
            checkpoint: str | Path | None = None, resume: bool = False, stop_after: int | None = None
            ) -> GradientAdapter:
        o = self.options
        episodes = self.validation_episodes(valid)
        self._train_cols = self.task_columns(train)
        k = int(o["valid_k"])
        with self.fr.eval_mode():
            if not (resume and checkpoint is not None and Path(checkpoint).exists()):
                self._select_lr(episodes, k, log)
            trainer = MetaTrainer(self, self._outer_loss, lambda: self.validation_score(episodes, k),
                                  self.schedule, log=log)
            done = trainer.run(train, checkpoint=checkpoint, resume=resume, stop_after=stop_after)
        if done:
            self.fitted.fill_(True)
            rates = {n: f"{float(a.detach().mean()):.3g}" for n, a in self.inner_lrs().items()}
            log(f"{self.name}: meta-trained {trainer.step} steps, best validation {trainer.best_score:.4f}; "
                f"mean inner lr {rates}")
        return self

    # ------------------------------------------------------------------ selection and training

    def _select_lr(self, episodes: EvalEpisodes, k: int, log: Callable[[str], None]) -> None:
        scores = {}
        for lr in self.options["lr_grid"]:
            with torch.no_grad():
                for p in self.log_lr.values():
                    p.fill_(math.log(float(lr)))
            scores[float(lr)] = self.validation_score(episodes, k)
        finite = {lr: s for lr, s in scores.items() if math.isfinite(s)}
        best = max(finite, key=finite.get) if finite else float(self.options["lr_grid"][0])
        with torch.no_grad():
            for p in self.log_lr.values():
                p.fill_(math.log(best))
        log(f"{self.name}: starting inner lr {best:g} (validation at K={k}: "
            + ", ".join(f"{lr:g}={s:.4f}" for lr, s in scores.items()) + ")")

    def validation_score(self, episodes: EvalEpisodes, k: int) -> float:
        """Like AUC of the validation users' query rows after adapting on k events (batched)."""
        return episodes.score(self.batch_predictions(episodes, k), esmm=self.esmm)

    @torch.no_grad()
    def batch_predictions(self, episodes: EvalEpisodes, k: int) -> dict[str, Tensor]:
        """Raw query scores {task: [Q]} of every user of `episodes` adapted on k events (vmap over users)."""
        support = episodes.support(k)
        out: list[Tensor] = []
        chunk = int(self.options["chunk"])
        for start in range(0, len(episodes), chunk):
            sl = slice(start, start + chunk)
            x, y, m = support.x[sl], support.y[sl], support.mask[sl]
            u, s = x.shape[:2]
            if s == 0:
                params = None
            else:
                e = self.fr.embed(x.reshape(u * s, -1)).view(u, s, *self._emb_shape())
                params = torch.func.vmap(self.adapt_params)(e, y, m)
            for i in range(u):
                qx, _ = episodes.query(start + i)
                p_i = None if params is None else {n: v[i] for n, v in params.items()}
                if p_i is None or not bool(all_finite(p_i)):
                    out.append(self.fr.scores({}, self.fr.embed(qx)))  # the ranker itself
                else:
                    out.append(self.fr.scores(p_i, self.fr.embed(qx)))
        scores = torch.cat(out, 1)
        return dict(zip(self.tasks, scores.unbind(0)))

    def _emb_shape(self) -> tuple[int, int]:
        emb = self.ranker.embedding
        return len(emb.fields), emb.dim

    def _outer_loss(self, batch: EpisodeBatch) -> tuple[Tensor, int]:
        sx, sy, sm, qx, qy, qm = batch_tensors(batch, self._train_cols)
        u, s = sx.shape[:2]
        q = qx.shape[1]
        e_s = self.fr.embed(sx.reshape(u * s, -1)).view(u, s, *self._emb_shape())
        e_q = self.fr.embed(qx.reshape(u * q, -1)).view(u, q, *self._emb_shape())
        init = self.initial_params()

        def user_loss(e_s: Tensor, y_s: Tensor, m_s: Tensor, e_q: Tensor, y_q: Tensor, m_q: Tensor):
            params = self.adapt_params(e_s, y_s, m_s)
            ok = all_finite(params)
            params = {n: torch.where(ok, v, init[n]) for n, v in params.items()}
            loss = episode_loss(self.fr.scores(params, e_q), y_q, m_q, self.tasks, esmm=self.esmm)
            return torch.where(ok, loss, torch.zeros_like(loss)), ok

        losses, ok = torch.func.vmap(user_loss)(e_s, sy, sm, e_q, qy, qm)
        n_ok = ok.sum()
        return losses.sum() / n_ok.clamp(min=1), int(len(ok) - n_ok)
