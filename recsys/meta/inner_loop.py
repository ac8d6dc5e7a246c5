"""The inner loop shared by fine-tuning and the MAML family: gradient steps on a support loss.

    θ_0 = init;   θ_{i+1} = θ_i − α_i ⊙ clip(∇_θ L_support(θ_i))          (Finn et al. ICML'17)

α is a scalar per tensor (MAML, first-order MAML, ANIL; learned in log space, as in the
per-layer learning rates of Antoniou et al. ICLR'19) or a tensor of θ's shape (Meta-SGD, Li et
al. 2017). With ``first_order`` the inner gradient is detached, which drops the second-order
term of the meta-gradient (FOMAML) but keeps the gradient with respect to α. Fine-tuning uses
the same loop with an Adam update and no meta-gradient at all.

The loop is a pure function of tensors, so it runs unbatched for one user at serving time and
under `torch.func.vmap` over the users of an `EpisodeBatch` during meta-training and selection.
Each inner gradient is clipped to a global norm; a non-finite gradient stays non-finite (NaN
never clips to a number), so `all_finite` flags the user and the caller falls back.

Shapes: U users, S support rows, F fields, D embedding dim, T tasks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recsys.meta.functional import FunctionalRanker, Params, episode_loss


def clip_grads(grads: Params, max_norm: float) -> Params:
    """Scale `grads` to a global norm of at most `max_norm` (NaN stays NaN)."""
    norm = torch.sqrt(sum((g * g).sum() for g in grads.values()))
    factor = (max_norm / (norm + 1e-12)).clamp(max=1.0)
    return {k: g * factor for k, g in grads.items()}


def all_finite(params: Params) -> Tensor:
    """Scalar bool: every element of every tensor is finite (vmap-friendly)."""
    return torch.stack([torch.isfinite(p).all() for p in params.values()]).all()


def inner_loop(fr: FunctionalRanker, init: Params, lrs: dict[str, Tensor] | float, e: Tensor, y: Tensor,
               mask: Tensor, *, steps: int, esmm: bool, first_order: bool = False, clip: float = 10.0,
               reduction: str = "mean", optimizer: str = "sgd", weights: Tensor | None = None,
               offset: Tensor | None = None, history: bool = False) -> Params | list[Params]:
    """Adapt `init` to one user's support rows.

    Args:
        fr: the functional ranker.
        init: the starting values θ_0 of the adapted tensors.
        lrs: a learning rate per tensor (a scalar tensor, a tensor of the parameter's shape, or
            one of shape [steps, ...] for per-step rates) or one float for all.
        e, y, mask: support embeddings [S, F, D], labels [S, T], row mask [S].
        steps: number of inner steps.
        esmm: the ranker's like output is conditional on click.
        first_order: detach the inner gradient (FOMAML).
        clip: global-norm clip of each inner gradient.
        reduction: ``mean`` or ``sum`` support loss (see `episode_loss`).
        optimizer: ``sgd`` (the MAML update) or ``adam`` (fine-tuning only).
        weights: [T] task weights of the support loss.
        offset: [T, S] fixed scores added to the ranker's on the support rows (the black box's taste).
        history: return the tensors after every step (fine-tuning's grid search).

    Returns:
        The adapted tensors θ_steps (with `history`, the list θ_1 … θ_steps).
    """
    def loss(params: Params) -> Tensor:
        scores = fr.scores(params, e) if offset is None else fr.scores(params, e) + offset
        return episode_loss(scores, y, mask, fr.tasks, esmm=esmm, weights=weights, reduction=reduction)

    params = dict(init)
    seen: list[Params] = []
    moments: dict[str, tuple[Tensor, Tensor]] = {}
    for step in range(steps):
        grads = torch.func.grad(loss)(params)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        grads = clip_grads(grads, clip)
        new = {}
        for k, p in params.items():
            lr = lrs if isinstance(lrs, float) else lrs[k]
            if isinstance(lr, Tensor) and lr.dim() > p.dim():  # per-step rates [steps, ...]
                lr = lr[step]
            if optimizer == "adam":
                m, v = moments.get(k, (torch.zeros_like(p), torch.zeros_like(p)))
                m = 0.9 * m + 0.1 * grads[k]
                v = 0.999 * v + 0.001 * grads[k] * grads[k]
                moments[k] = (m, v)
                update = (m / (1 - 0.9 ** (step + 1))) / ((v / (1 - 0.999 ** (step + 1))).sqrt() + 1e-8)
            else:
                update = grads[k]
            new[k] = p - lr * update
        params = new
        if history:
            seen.append(params)
    return seen if history else params
