"""`proto`: prototypes in the ranker's embedding space (Snell et al., "Prototypical Networks for
Few-shot Learning", NeurIPS'17), turned into per-user score offsets.

For each task, a new user's support rows give two class prototypes: the mean (unit-normalised)
item embedding of the rows labelled 1 and of the rows labelled 0 (ESMM's like: liked vs clicked
but not liked; for a regression task, one prototype weighted by the centred labels). A
candidate's *taste* offset is the ProtoNet logit with cosine similarity,

    taste_t(c) = cos(z_c, p_t^+) − cos(z_c, p_t^−)

and the user's *level* on the task is the label prototype: the mean residual of the support
labels against the ranker's own predictions, shrunk towards 0 as a Gaussian prior of precision
λ_t would (one Newton step on the task's offset; for a logit, Σ(y − σ(s)) / (Σ σ(s)(1 − σ(s)) + λ_t)).
The adapted score is ``base_t(c) + level_t + w_t · taste_t(c)``; λ_t and w_t are selected per
task on the validation new users (each task by its own pooled metric: AUC for binary tasks,
MSE for regression; click before like, since p(like) depends on both under ESMM). Nothing is
trained by gradient; with K = 0 the scores are the ranker's.

Shapes: S support rows, N candidates, D_i item-embedding width, T tasks.

Example:
    >>> adapter = build_adapter("proto", ranker, esmm=True).fit(warm, valid)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys.data.episodes import EpisodeSampler
from recsys.data.fields import TASK_KINDS
from recsys.errors import ConfigError
from recsys.meta.base import Adapter, Scorer
from recsys.meta.functional import FunctionalRanker
from recsys.meta.selection import selection_score


class Prototypes(Adapter):
    """Prototype taste offsets + shrunk label-prototype level offsets, blended per task.

    Options:
        lambdas: grid of prior precisions λ (larger = trust the support less).
        weights: grid of taste weights w (0 = level only).
        valid_k, query_after: validation support size and query start.
    """

    name = "proto"
    defaults: dict[str, Any] = {
        "lambdas": (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 1e9),
        "weights": (0.0, 0.1, 0.25, 0.5, 1.0, 2.0),
        "valid_k": 5,
        "query_after": 20,
    }

    def __init__(self, ranker: nn.Module, *, esmm: bool = False, **options: Any) -> None:
        super().__init__(ranker, esmm=esmm, **options)
        o = self.options
        if not o["lambdas"] or any(not (float(v) > 0) for v in o["lambdas"]):
            raise ConfigError(f"option lambdas of adapter 'proto' must be positive, got {o['lambdas']!r}")
        if not o["weights"] or any(not (float(v) >= 0) for v in o["weights"]):
            raise ConfigError(f"option weights of adapter 'proto' must be >= 0, got {o['weights']!r}")
        self.fr = FunctionalRanker(ranker)
        n = len(self.tasks)
        self.register_buffer("lam", torch.full((n,), 4.0))       # before fit: moderate shrinkage
        self.register_buffer("weight", torch.zeros(n))            # … and no taste offset
        self.register_buffer("fitted", torch.tensor(False))

    # ------------------------------------------------------------------ the user's statistics

    def user_stats(self, support_x: Tensor, support_y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(residual sum [T], curvature sum [T], positive prototypes [T, D_i], negative prototypes [T, D_i])."""
        e = self.fr.embed(support_x)
        s = self.fr.scores({}, e)                                   # [T, S] the ranker's own scores
        z = F.normalize(self.fr.item_embedding(e), dim=1)          # [S, D_i]
        y = support_y.to(s.dtype)
        n_tasks = len(self.tasks)
        num, den = s.new_zeros(n_tasks), s.new_zeros(n_tasks)
        pos, neg = s.new_zeros(n_tasks, z.shape[1]), s.new_zeros(n_tasks, z.shape[1])
        for j, task in enumerate(self.tasks):
            label = y[:, j]
            seen = ~torch.isnan(label)
            if self.esmm and task == "like":
                seen = seen & (y[:, self.tasks.index("click")] == 1)  # like | click on clicked rows
            lab = torch.nan_to_num(label)
            w = seen.to(s.dtype)
            if TASK_KINDS[task] == "binary":
                p = torch.sigmoid(s[j])
                num[j] = ((lab - p) * w).sum()
                den[j] = (p * (1 - p) * w).sum()
                pos[j] = _mean(z, w * lab)
                neg[j] = _mean(z, w * (1 - lab))
            else:
                num[j] = ((lab - s[j]) * w).sum()
                den[j] = w.sum()
                centred = (lab - (lab * w).sum() / w.sum().clamp(min=1)) * w
                pos[j] = _mean(z, centred.clamp(min=0))
                neg[j] = _mean(z, (-centred).clamp(min=0))
        return num, den, pos, neg

    def offsets(self, e: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """Taste offsets [T, N] of candidates embedded as e [N, F, D]."""
        z = F.normalize(self.fr.item_embedding(e), dim=1)          # [N, D_i]
        pn = F.normalize(pos, dim=1), F.normalize(neg, dim=1)
        has = (pos.norm(dim=1) > 0) & (neg.norm(dim=1) > 0)        # both classes seen
        return (pn[0] @ z.t() - pn[1] @ z.t()) * has[:, None].to(z.dtype)

    # ------------------------------------------------------------------ interface

    def adapt(self, support_x: Tensor, support_y: Tensor) -> Scorer:
        self.check_support(support_x, support_y)
        if len(support_x) == 0:
            return self.base_scorer()
        with torch.no_grad(), self.fr.eval_mode():
            num, den, pos, neg = self.user_stats(support_x, support_y)
            level = num / (den + self.lam)
        if not bool(torch.isfinite(level).all() and torch.isfinite(pos).all() and torch.isfinite(neg).all()):
            return self.fallback("the prototypes went non-finite")
        fr, tasks, weight = self.fr, self.tasks, self.weight.clone()

        def score(x: Tensor) -> dict[str, Tensor]:
            with torch.no_grad(), fr.eval_mode():
                e = fr.embed(x)
                out = fr.scores({}, e) + level[:, None] + weight[:, None] * self.offsets(e, pos, neg)
            return dict(zip(tasks, out.unbind(0)))

        return score

    def fit(self, train: EpisodeSampler, valid: EpisodeSampler, *, log: Callable[[str], None] = print,
            checkpoint: str | Path | None = None, resume: bool = False, stop_after: int | None = None
            ) -> Prototypes:
        o = self.options
        episodes = self.validation_episodes(valid)
        support = episodes.support(int(o["valid_k"]))
        base, taste, num, den = [], [], [], []
        with torch.no_grad(), self.fr.eval_mode():
            for u in range(len(episodes)):
                sx, sy = support.user(u)
                e = self.fr.embed(episodes.query(u)[0])
                n_, d_, p_, q_ = self.user_stats(sx, sy)
                base.append(self.fr.scores({}, e))
                taste.append(self.offsets(e, p_, q_))
                counts = episodes.query_count[u]
                num.append(n_[:, None].expand(-1, int(counts)))
                den.append(d_[:, None].expand(-1, int(counts)))
        base, taste, num, den = (torch.cat(v, 1) for v in (base, taste, num, den))  # [T, Q] each
        order = sorted(range(len(self.tasks)), key=lambda j: self.tasks[j] != "click")
        chosen = []
        for j in order:
            task, best = self.tasks[j], None
            for lam in o["lambdas"]:
                for w in o["weights"]:
                    trial = base.clone()
                    for i in range(len(self.tasks)):   # the tasks chosen so far keep their choice
                        lam_i, w_i = (lam, w) if i == j else (float(self.lam[i]), float(self.weight[i]))
                        if i == j or i in [c[0] for c in chosen]:
                            trial[i] = base[i] + num[i] / (den[i] + lam_i) + w_i * taste[i]
                    raw = dict(zip(self.tasks, trial.unbind(0)))
                    score = selection_score(raw, episodes.query_y, self.tasks, esmm=self.esmm, task=task)
                    if best is None or score > best[0]:
                        best = (score, lam, w)
            self.lam[j], self.weight[j] = float(best[1]), float(best[2])
            chosen.append((j, best[0]))
        self.fitted.fill_(True)
        log("proto: selected " + ", ".join(f"{self.tasks[j]}: lambda={float(self.lam[j]):g} w={float(self.weight[j]):g} "
                                           f"({s:.4f})" for j, s in chosen))
        return self


def _mean(z: Tensor, w: Tensor) -> Tensor:
    """Weighted mean of rows z [S, D] with weights w [S]; zeros when the weights sum to 0."""
    return (w[:, None] * z).sum(0) / w.sum().clamp(min=1e-12)
