"""`finetune`: gradient steps on a new user's support loss, tuned on validation users.

The transfer-learning baseline of the seed notes ("fine-tune certain layers"), made strong: the
adapted tensors (a scope of `recsys.meta.functional`: output offsets, the user vector, the last
layer, the task towers, everything), the optimiser (Adam or SGD), its learning rate and the
number of steps are chosen together by a grid search on the *validation* new users, scored
by the mean validation like AUC over the support sizes `valid_ks` (default K = 1 and `valid_k`
= 5), and the chosen point is then used for every K. One point serves users with any number of
events, so it is tuned for both ends: a point tuned at K = 5 alone can over-fit one event (on
one MovieLens-100k split, mean loss, lr 0.1, 2 steps: like AUC −0.009 below no adaptation at
K = 1), and a point tuned at K = 1 alone rests on one event per validation user. The grid is
bounded (<= 10 steps) so that adapting one user stays live.

Each step is the masked multi-task loss of training (ESMM-aware) on the support rows, computed
functionally on copies starting from the trained ranker's values (`torch.func.functional_call`),
so the ranker itself never changes. The grid search runs the inner loop for all validation
users at once under `torch.func.vmap`, keeping the parameters after every step, so one run per
(scope, optimiser, reduction, lr) scores every step count.

Example:
    >>> adapter = build_adapter("finetune", ranker, esmm=True).fit(warm, valid)   # doctest: +SKIP
    >>> adapter.selected()                                                        # doctest: +SKIP
    {'scope': 'user', 'optimizer': 'sgd', 'reduction': 'sum', 'lr': 0.01, 'steps': 5}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from recsys.data.episodes import EpisodeSampler
from recsys.errors import ConfigError
from recsys.meta.base import Adapter, Scorer
from recsys.meta.functional import FunctionalRanker, Params
from recsys.meta.inner_loop import all_finite, inner_loop
from recsys.meta.selection import EvalEpisodes


class FineTune(Adapter):
    """Fine-tuning with scope, optimiser, learning rate and steps selected on validation users.

    Options:
        scopes, optimizers, lrs, steps, reductions: the grid (one value each fixes that
            choice); a ``sum`` support loss moves the parameters further the more events a
            user has, a ``mean`` one the same distance for 1 event as for 20.
        clip: global-norm clip of each gradient.
        valid_k: the largest K of the validation support sets; valid_ks: the K values whose
            mean validation score selects the point (default: 1 and valid_k); query_after:
            validation query rows start after this many events; chunk: users per vmap call in
            the grid search.

    Before `fit` (or with one-point grids) the first scope and optimiser, the middle learning
    rate and the middle step count are used.
    """

    name = "finetune"
    defaults: dict[str, Any] = {
        "scopes": ("bias", "user", "last", "head", "user+head", "all"),
        "optimizers": ("adam", "sgd"),
        "lrs": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
        "steps": (1, 2, 3, 5, 10),
        "reductions": ("mean", "sum"),
        "clip": 10.0,
        "valid_k": 5,
        "valid_ks": None,
        "query_after": 20,
        "chunk": 16,
    }

    def __init__(self, ranker: nn.Module, *, esmm: bool = False, **options: Any) -> None:
        super().__init__(ranker, esmm=esmm, **options)
        o = self.options
        self.fr = FunctionalRanker(ranker)
        for name in ("scopes", "optimizers", "lrs", "steps", "reductions"):
            if not isinstance(o[name], list | tuple) or not o[name]:
                raise ConfigError(f"option {name} of adapter 'finetune' must be a non-empty list, got {o[name]!r}")
        self.scope_names = [self.fr.scope_names(s) for s in o["scopes"]]  # validates every scope
        bad = [v for v in o["optimizers"] if v not in ("adam", "sgd")]
        if bad:
            raise ConfigError(f"option optimizers of adapter 'finetune': unknown {bad}; use 'adam' or 'sgd'")
        if any(not (float(v) > 0) for v in o["lrs"]) or any(int(v) < 1 for v in o["steps"]):
            raise ConfigError(f"options lrs / steps of adapter 'finetune' must be positive, got {o['lrs']} / {o['steps']}")
        bad = [v for v in o["reductions"] if v not in ("mean", "sum")]
        if bad:
            raise ConfigError(f"option reductions of adapter 'finetune': unknown {bad}; use 'mean' or 'sum'")
        lrs, steps = sorted(o["lrs"]), sorted(o["steps"])
        ks = o["valid_ks"] if o["valid_ks"] is not None else (1, max(1, int(o["valid_k"])))
        if not isinstance(ks, list | tuple) or not ks or any(int(k) < 1 for k in ks):
            raise ConfigError(f"option valid_ks of adapter 'finetune' must be a non-empty list of K >= 1, got {ks!r}")
        self.valid_ks = tuple(sorted({int(k) for k in ks}))
        self.register_buffer("scope_index", torch.tensor(0))
        self.register_buffer("optimizer_index", torch.tensor(0))
        self.register_buffer("reduction_index", torch.tensor(0))
        self.register_buffer("lr", torch.tensor(float(lrs[len(lrs) // 2]), dtype=torch.float64))
        self.register_buffer("n_steps", torch.tensor(int(steps[len(steps) // 2])))
        self.register_buffer("fitted", torch.tensor(False))

    def selected(self) -> dict[str, Any]:
        """The grid point in use: scope, optimizer, reduction, lr, steps."""
        return {"scope": self.options["scopes"][int(self.scope_index)],
                "optimizer": self.options["optimizers"][int(self.optimizer_index)],
                "reduction": self.options["reductions"][int(self.reduction_index)],
                "lr": float(self.lr), "steps": int(self.n_steps)}

    # ------------------------------------------------------------------ adapt

    def _run(self, init: Params, e: Tensor, y: Tensor, mask: Tensor, *, optimizer: str, reduction: str, lr: float,
             steps: int, history: bool = False) -> Params | list[Params]:
        return inner_loop(self.fr, init, lr, e, y, mask, steps=steps, esmm=self.esmm, clip=float(self.options["clip"]),
                          reduction=reduction, optimizer=optimizer, history=history)

    def adapt(self, support_x: Tensor, support_y: Tensor) -> Scorer:
        self.check_support(support_x, support_y)
        if len(support_x) == 0:
            return self.base_scorer()
        point = self.selected()
        with torch.no_grad(), self.fr.eval_mode():
            e = self.fr.embed(support_x)
            init = self.fr.initial(self.scope_names[int(self.scope_index)])
            mask = torch.ones(len(e), dtype=torch.bool, device=e.device)
            params = self._run(init, e, support_y.to(e.dtype), mask,
                               optimizer=point["optimizer"], reduction=point["reduction"], lr=point["lr"],
                               steps=point["steps"])
        if not bool(all_finite(params)):
            return self.fallback("fine-tuning went non-finite")
        return self.fr.scorer(params)

    # ------------------------------------------------------------------ selection

    def fit(self, train: EpisodeSampler, valid: EpisodeSampler, *, log: Callable[[str], None] = print,
            checkpoint: str | Path | None = None, resume: bool = False, stop_after: int | None = None
            ) -> FineTune:
        o = self.options
        episodes = self.validation_episodes(valid)
        supports = [episodes.support(k) for k in self.valid_ks]
        steps = sorted({int(s) for s in o["steps"]})
        best: tuple[float, int, int, int, float, int] | None = None
        rows = []
        with torch.no_grad(), self.fr.eval_mode():
            query_e = [self.fr.embed(episodes.query(u)[0]) for u in range(len(episodes))]
            for si, names in enumerate(self.scope_names):
                for oi, opt in enumerate(o["optimizers"]):
                    for ri, red in enumerate(o["reductions"]):
                        if opt == "adam" and red == "sum" and "mean" in o["reductions"]:
                            continue  # Adam's steps do not depend on the loss's scale: the same points
                        for lr in o["lrs"]:
                            per_k = [self._grid_scores(episodes, support, query_e, names, opt, red, float(lr), steps)
                                     for support in supports]
                            scores = [sum(v) / len(v) for v in zip(*per_k)]  # NaN if any K went non-finite
                            for n, score in zip(steps, scores):
                                rows.append((o["scopes"][si], opt, red, float(lr), n, score))
                                if math.isfinite(score) and (best is None or score > best[0]):
                                    best = (score, si, oi, ri, float(lr), n)
                scope_rows = [r for r in rows if r[0] == o["scopes"][si] and math.isfinite(r[-1])]
                if scope_rows:
                    top = max(scope_rows, key=lambda r: r[-1])
                    log(f"finetune: scope {top[0]}: best {top[-1]:.4f} ({top[1]}, {top[2]}, lr {top[3]:g}, "
                        f"{top[4]} steps)")
        if best is None:
            raise ConfigError("finetune: every grid point went non-finite on the validation users; "
                              "lower the learning rates")
        _, si, oi, ri, lr, n = best
        self.scope_index.fill_(si)
        self.optimizer_index.fill_(oi)
        self.reduction_index.fill_(ri)
        self.lr.fill_(lr)
        self.n_steps.fill_(n)
        self.fitted.fill_(True)
        self.grid_ = rows
        log(f"finetune: selected {self.selected()} (mean validation like AUC at K = "
            f"{', '.join(map(str, self.valid_ks))}: {best[0]:.4f}; {len(rows)} grid points)")
        return self

    def _grid_scores(self, episodes: EvalEpisodes, support, query_e: list[Tensor], names: tuple[str, ...],
                     optimizer: str, reduction: str, lr: float, steps: list[int]) -> list[float]:
        """Validation score after each step count in `steps` for one (scope, optimiser, reduction, lr)."""
        init = self.fr.initial(names)
        chunk = int(self.options["chunk"])
        n_users = len(episodes)
        outputs: dict[int, list[Tensor]] = {n: [] for n in steps}
        emb = self.ranker.embedding
        for start in range(0, n_users, chunk):
            sl = slice(start, start + chunk)
            x, y, m = support.x[sl], support.y[sl], support.mask[sl]
            u, s = x.shape[:2]
            e = self.fr.embed(x.reshape(u * s, -1)).view(u, s, len(emb.fields), emb.dim)
            run = lambda e, y, m: self._run(init, e, y, m, optimizer=optimizer, reduction=reduction,  # noqa: E731
                                            lr=lr, steps=max(steps), history=True)
            hist = torch.func.vmap(run)(e, y, m)
            for n in steps:
                params = hist[n - 1]
                for i in range(u):
                    p_i = {k: v[i] for k, v in params.items()}
                    if not bool(all_finite(p_i)):
                        p_i = {}
                    outputs[n].append(self.fr.scores(p_i, query_e[start + i]))
        result = []
        for n in steps:
            raw = dict(zip(self.tasks, torch.cat(outputs[n], 1).unbind(0)))
            result.append(episodes.score(raw, esmm=self.esmm))
        return result
