"""`blackbox`: an amortised set encoder reads the support set and writes the user's parameters.

The black-box family of CS330 (a network computes the task parameters φ_i = f_θ(D_i^tr)), in its
neural-process form (Garnelo et al. 2018; TaNP, Lin et al. WWW'21): a permutation-invariant
DeepSets encoder (Zaheer et al. NeurIPS'17) over the support rows,

    r_i = φ([item embedding_i, ranker scores_i, labels_i (NaN → 0), observed_i])
    h   = ρ([mean_i r_i, log(1 + S)])
    h  → Δu [D], b [T], Q [T, D_i]

gives the new user's *user vector* u = OOV row + Δu (it replaces the user-id embedding, so the
whole ranker sees the user), a per-task score offset b (the user's level) and a per-task taste
vector Q_t scored against the candidate's item embedding z_c:

    score_t(c) = ranker_t(x_c with user := u) + b_t + <Q_t, z_c> / sqrt(D_i)

The ranker's own scores on the support rows are an input, so the encoder reads residuals (what
the ranker got wrong about this user) rather than raw labels. The last layer starts at zero, so
before meta-training the adapter scores every user as the ranker scores a new one.
Meta-training (`recsys.meta.meta_training`): warm users' training episodes with the user id
masked to OOV and K drawn from the shot set; outer loss = the masked multi-task loss on their
query rows; early-stopped on validation like AUC at K = `valid_k`. Adapting is one forward pass.

With ``inner_steps > 0`` the encoder's output is only the *start*: u and the offsets then take
that many gradient steps on the support loss (summed over rows, so more events move them
further) with learned per-tensor inner rates, and the encoder is meta-trained through those
steps (second order, as MAML; Finn et al. ICML'17) - an amortised initialisation for MAML, in
the spirit of LEO (Rusu et al. ICLR'19). The starting rate is selected on validation users.

Shapes: U users, S support rows, Q query rows, F fields, D embedding dim, D_i item-embedding
width, H hidden width, T tasks.
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
from recsys.meta.functional import USER, FunctionalRanker, Params, episode_loss
from recsys.meta.inner_loop import all_finite, inner_loop
from recsys.meta.meta_training import MetaSchedule, MetaTrainer
from recsys.meta.selection import adapter_predictions, batch_tensors

OUTPUTS = ("user", "bias", "taste")


class SetEncoder(nn.Module):
    """DeepSets over support rows → (Δu [U, D], b [U, T], Q [U, T, D_i]).

    Args:
        row_dim: width of a row's features; hidden: H; dim: D; n_tasks: T; item_dim: D_i.
    """

    def __init__(self, row_dim: int, hidden: int, dim: int, n_tasks: int, item_dim: int) -> None:
        super().__init__()
        self.dim, self.n_tasks, self.item_dim = dim, n_tasks, item_dim
        self.phi = nn.Sequential(nn.Linear(row_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.rho = nn.Sequential(nn.Linear(hidden + 1, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, dim + n_tasks + n_tasks * item_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, rows: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """rows [U, S, row_dim], mask [U, S] → (Δu [U, D], b [U, T], Q [U, T, D_i])."""
        w = mask.to(rows.dtype).unsqueeze(-1)                       # [U, S, 1]
        n = w.sum(1)                                                # [U, 1]
        pooled = (self.phi(rows) * w).sum(1) / n.clamp(min=1)       # [U, H]
        h = self.rho(torch.cat([pooled, torch.log1p(n) / math.log(101.0)], 1))
        out = self.out(h)
        d, t = self.dim, self.n_tasks
        return out[:, :d], out[:, d:d + t], out[:, d + t:].view(-1, t, self.item_dim)


class BlackBox(Adapter):
    """Amortised adaptation by a meta-trained set encoder (see the module docstring).

    Options:
        outputs: which of ``user``, ``bias``, ``taste`` the encoder writes ("+"-joined).
        hidden: encoder width H.
        meta_lr, meta_batch, steps_per_epoch, max_epochs, patience, shots, max_query, seed,
        checkpoint_every: the outer loop (`recsys.meta.meta_training.MetaSchedule`).
        weight_decay: L2 penalty on the encoder's weights, added to the outer loss.
        inner_steps: gradient steps refining u and the offsets after the encoder (0 = none);
        inner_lr_grid: candidates for their starting rate (selected on validation users, then
        learned); clip: global-norm clip of each inner gradient.
        valid_k, query_after: validation support size and query start.
    """

    name = "blackbox"
    defaults: dict[str, Any] = {
        "outputs": "user+bias+taste",
        "hidden": 64,
        "meta_lr": 1e-3, "meta_batch": 32, "steps_per_epoch": 100, "max_epochs": 30, "patience": 3,
        "shots": (1, 3, 5, 10, 20), "max_query": 100, "seed": 0, "checkpoint_every": 50,
        "weight_decay": 0.0,
        "inner_steps": 0, "inner_lr_grid": (0.001, 0.003, 0.01, 0.03), "clip": 10.0,
        "valid_k": 5, "query_after": 20,
    }

    def __init__(self, ranker: nn.Module, *, esmm: bool = False, **options: Any) -> None:
        super().__init__(ranker, esmm=esmm, **options)
        o = self.options
        parts = tuple(p.strip() for p in str(o["outputs"]).split("+"))
        bad = [p for p in parts if p not in OUTPUTS]
        if bad or not parts:
            raise ConfigError(f"option outputs of adapter {self.name!r}: unknown {bad or o['outputs']!r}; "
                              f"use {', '.join(OUTPUTS)} joined by '+'")
        self.fr = FunctionalRanker(ranker)
        if "user" in parts and self.fr.user_slot is None:
            raise ConfigError("blackbox output 'user' needs a f_user_id field in the schema; drop it from outputs")
        self.parts = parts
        if int(o["hidden"]) < 1:
            raise ConfigError(f"option hidden of adapter {self.name!r} must be >= 1, got {o['hidden']}")
        self.schedule = MetaSchedule(lr=float(o["meta_lr"]), batch=int(o["meta_batch"]),
                                     steps_per_epoch=int(o["steps_per_epoch"]), max_epochs=int(o["max_epochs"]),
                                     patience=int(o["patience"]), shots=tuple(int(k) for k in o["shots"]),
                                     max_query=int(o["max_query"]), seed=int(o["seed"]),
                                     checkpoint_every=int(o["checkpoint_every"]))
        emb = ranker.embedding
        n_tasks = len(self.tasks)
        self.item_dim = len(self.fr.item_fields) * emb.dim
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
            torch.manual_seed(int(o["seed"]))
            self.encoder = SetEncoder(self.item_dim + 3 * n_tasks, int(o["hidden"]), emb.dim, n_tasks, self.item_dim)
        self.inner_steps = int(o["inner_steps"])
        if self.inner_steps < 0 or not o["inner_lr_grid"] or any(not (float(v) > 0) for v in o["inner_lr_grid"]):
            raise ConfigError(f"options inner_steps / inner_lr_grid of adapter {self.name!r} must be >= 0 / positive, "
                              f"got {o['inner_steps']!r} / {o['inner_lr_grid']!r}")
        self.adapted = ((USER,) if "user" in parts else ()) + ("output_bias",)
        self.log_lr = nn.ParameterDict({
            n: nn.Parameter(torch.tensor(math.log(float(o["inner_lr_grid"][0])))) for n in self.adapted
        } if self.inner_steps else {})
        self.register_buffer("fitted", torch.tensor(False))

    # ------------------------------------------------------------------ the encoder's view

    def _rows(self, e: Tensor, y: Tensor) -> Tensor:
        """Row features [..., S, D_i + 3T] of support rows embedded as e [..., S, F, D]."""
        lead = e.shape[:-2]
        flat = e.reshape(-1, *e.shape[-2:])
        scores = self.fr.scores({}, flat).t().reshape(*lead, -1)   # [..., S, T] the ranker's raw scores
        z = self.fr.item_embedding(flat).reshape(*lead, -1)
        seen = ~torch.isnan(y)
        return torch.cat([z, scores, torch.nan_to_num(y), seen.to(e.dtype)], -1)

    def _encode(self, e: Tensor, y: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        du, b, q = self.encoder(self._rows(e, y), mask)
        if "user" not in self.parts:
            du = torch.zeros_like(du)
        if "bias" not in self.parts:
            b = torch.zeros_like(b)
        if "taste" not in self.parts:
            q = torch.zeros_like(q)
        return du, b, q

    def _taste(self, e: Tensor, q: Tensor) -> Tensor:
        """Taste offsets [T, N] of rows e [N, F, D] for one user's taste vectors q [T, D_i]."""
        return (q @ self.fr.item_embedding(e).t()) / math.sqrt(self.item_dim)

    def personalise(self, e: Tensor, y: Tensor, mask: Tensor, du: Tensor, b: Tensor, q: Tensor) -> Params:
        """One user's adapted tensors (user vector, output offsets) from the encoder's output and,
        with ``inner_steps``, gradient steps on their support rows (e [S, F, D], y [S, T], mask [S])."""
        params = {"output_bias": self.ranker.output_bias + b}
        if USER in self.adapted:
            params[USER] = self.fr.oov_row() + du
        if not self.inner_steps:
            return params
        lrs = {n: v.exp() for n, v in self.log_lr.items()}
        return inner_loop(self.fr, params, lrs, e, y, mask, steps=self.inner_steps, esmm=self.esmm,
                          clip=float(self.options["clip"]), reduction="sum", offset=self._taste(e, q))

    def _scores(self, e: Tensor, params: Params, q: Tensor) -> Tensor:
        """One user's scores [T, N] of rows e [N, F, D]."""
        return self.fr.scores(params, e) + self._taste(e, q)

    # ------------------------------------------------------------------ interface

    def adapt(self, support_x: Tensor, support_y: Tensor) -> Scorer:
        self.check_support(support_x, support_y)
        if len(support_x) == 0:
            return self.base_scorer()
        with torch.no_grad(), self.fr.eval_mode():
            e = self.fr.embed(support_x)
            y = support_y.to(e.dtype)
            mask = torch.ones(len(e), dtype=torch.bool, device=e.device)
            du, b, q = (v[0] for v in self._encode(e[None], y[None], mask[None]))
            params = self.personalise(e, y, mask, du, b, q)
        if not (bool(all_finite(params)) and bool(torch.isfinite(q).all())):
            return self.fallback("the set encoder's output or its refinement is non-finite")
        fr, tasks = self.fr, self.tasks

        def score(x: Tensor) -> dict[str, Tensor]:
            with torch.no_grad(), fr.eval_mode():
                return dict(zip(tasks, self._scores(fr.embed(x), params, q).unbind(0)))

        return score

    def fit(self, train: EpisodeSampler, valid: EpisodeSampler, *, log: Callable[[str], None] = print,
            checkpoint: str | Path | None = None, resume: bool = False, stop_after: int | None = None
            ) -> BlackBox:
        o = self.options
        episodes = self.validation_episodes(valid)
        self._train_cols = self.task_columns(train)
        k = int(o["valid_k"])

        def validate() -> float:
            return episodes.score(adapter_predictions(self.adapt, episodes, k), esmm=self.esmm)

        with self.fr.eval_mode():
            if self.inner_steps and not (resume and checkpoint is not None and Path(checkpoint).exists()):
                self._select_lr(validate, log)
            trainer = MetaTrainer(self, self._outer_loss, validate, self.schedule, log=log)
            done = trainer.run(train, checkpoint=checkpoint, resume=resume, stop_after=stop_after)
        if done:
            self.fitted.fill_(True)
            rates = {n: f"{float(v.detach().exp()):.3g}" for n, v in self.log_lr.items()}
            log(f"{self.name}: meta-trained {trainer.step} steps, best validation {trainer.best_score:.4f}"
                + (f"; inner lr {rates}" if rates else ""))
        return self

    def _select_lr(self, validate: Callable[[], float], log: Callable[[str], None]) -> None:
        """The starting inner rate: the best of `inner_lr_grid` on validation users (encoder untrained)."""
        scores = {}
        for lr in self.options["inner_lr_grid"]:
            with torch.no_grad():
                for p in self.log_lr.values():
                    p.fill_(math.log(float(lr)))
            scores[float(lr)] = validate()
        finite = {lr: v for lr, v in scores.items() if math.isfinite(v)}
        best = max(finite, key=finite.get) if finite else float(self.options["inner_lr_grid"][0])
        with torch.no_grad():
            for p in self.log_lr.values():
                p.fill_(math.log(best))
        log(f"{self.name}: starting inner lr {best:g} (validation: "
            + ", ".join(f"{lr:g}={v:.4f}" for lr, v in scores.items()) + ")")

    def _outer_loss(self, batch: EpisodeBatch) -> tuple[Tensor, int]:
        sx, sy, sm, qx, qy, qm = batch_tensors(batch, self._train_cols)
        emb = self.ranker.embedding
        fd = (len(emb.fields), emb.dim)
        u_, s_ = sx.shape[:2]
        q_ = qx.shape[1]
        e_s = self.fr.embed(sx.reshape(u_ * s_, -1)).view(u_, s_, *fd)
        e_q = self.fr.embed(qx.reshape(u_ * q_, -1)).view(u_, q_, *fd)
        du, b, q = self._encode(e_s, sy, sm)

        def user_loss(e_s, y_s, m_s, e_q, y_q, m_q, du, b, q):
            params = self.personalise(e_s, y_s, m_s, du, b, q)
            ok = all_finite(params)
            params = {n: torch.where(ok, v, torch.zeros_like(v)) for n, v in params.items()}
            loss = episode_loss(self._scores(e_q, params, q), y_q, m_q, self.tasks, esmm=self.esmm)
            return torch.where(ok, loss, torch.zeros_like(loss)), ok

        losses, ok = torch.func.vmap(user_loss)(e_s, sy, sm, e_q, qy, qm, du, b, q)
        n_ok = ok.sum()
        loss = losses.sum() / n_ok.clamp(min=1)
        decay = float(self.options["weight_decay"])
        if decay:
            loss = loss + decay * sum((p * p).sum() for p in self.encoder.parameters())
        return loss, int(len(ok) - n_ok)
