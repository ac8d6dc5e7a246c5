"""The ranker as a pure function of the parameters an adapter personalises.

Every gradient-based adapter (fine-tuning, the MAML family) and the black-box encoder evaluate
the frozen ranker with a few of its tensors replaced, via `torch.func.functional_call`:

    scores(params, e) = ranker.forward_embedded(e with the user slot := params["user"])
                        with the ranker's named parameters overridden by the rest of `params`

`e` are the rows' embeddings [B, F, D], computed once per user with the user id set to OOV
(a new user has no id embedding, and the frozen table never changes); the user slot of every
row is then replaced by a per-user *user vector* [D], initialised from the OOV row. Nothing
here has side effects on the ranker, so `scores` composes with `torch.func.grad` (second order
included) and `torch.func.vmap` over users.

Scopes name what adapts ("+" joins them, e.g. ``"user+head"``):

    bias  the per-task output offsets (output_bias) - the user's *level* on each task
    user  the user vector [D] + output_bias - level and *taste* through the whole network
    last  the final linear layer of each task tower + output_bias (ANIL, Raghu et al. ICLR'20)
    head  every layer of the task towers + output_bias
    all   every parameter but the embedding table, + the user vector

Shapes: B rows, F fields, D embedding dim, T tasks, S support rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from recsys.data.fields import OOV, TASK_KINDS
from recsys.errors import ConfigError
from recsys.meta.base import USER_FIELD, Scorer
from recsys.mtl.losses import esmm_bce

USER = "user"
SCOPES: tuple[str, ...] = ("bias", "user", "last", "head", "all")

Params = dict[str, Tensor]


class _Embedded(nn.Module):
    """`ranker.forward_embedded` as a module's forward, so `functional_call` can run it."""

    def __init__(self, ranker: nn.Module) -> None:
        super().__init__()
        self.ranker = ranker

    def forward(self, e: Tensor) -> dict[str, Tensor]:
        return self.ranker.forward_embedded(e)


class FunctionalRanker:
    """A frozen ranker evaluated with some tensors replaced (see the module docstring).

    Args:
        ranker: the trained ranker (never modified).

    Example:
        >>> fr = FunctionalRanker(ranker)                                   # doctest: +SKIP
        >>> params = fr.initial(fr.scope_names("user+bias"))                # doctest: +SKIP
        >>> fr.scores(params, fr.embed(x)).shape                            # doctest: +SKIP
        torch.Size([T, B])
    """

    def __init__(self, ranker: nn.Module) -> None:
        self.ranker = ranker
        self.tasks: tuple[str, ...] = tuple(ranker.tasks)
        self._module = _Embedded(ranker)
        emb = ranker.embedding
        fields = emb.fields
        self.user_slot = fields.index(USER_FIELD) if USER_FIELD in fields else None
        self._slot_mask = torch.zeros(len(fields), 1, dtype=torch.bool)
        if self.user_slot is not None:
            self._slot_mask[self.user_slot] = True
        schema = ranker.schema
        self.user_cols = schema.slice(USER_FIELD) if self.user_slot is not None else None
        self.item_fields = tuple(i for i, f in enumerate(fields) if schema.field(f).side == "item")

    # ------------------------------------------------------------------ parameters

    def scope_names(self, scope: str) -> tuple[str, ...]:
        """Names of the tensors a scope adapts (ranker parameter names, and ``"user"``).

        Raises:
            ConfigError: an unknown scope part, or ``user`` for a schema without a user-id field.
        """
        parts = [p.strip() for p in str(scope).split("+")]
        unknown = [p for p in parts if p not in SCOPES]
        if unknown or not parts:
            raise ConfigError(f"unknown adaptation scope {unknown or scope!r} in {scope!r}; "
                              f"scopes are {', '.join(SCOPES)} joined by '+' (e.g. 'user+head')")
        names = dict.fromkeys(["output_bias"])
        own = [n for n, _ in self.ranker.named_parameters() if n != "output_bias"]
        for part in parts:
            if part in ("user", "all"):
                if self.user_slot is None:
                    raise ConfigError(f"scope {part!r} adapts the user vector, but the schema has no {USER_FIELD} field")
                names[USER] = None
            if part == "all":
                names.update(dict.fromkeys(n for n in own if not n.startswith("embedding.")))
            elif part in ("head", "last"):
                names.update(dict.fromkeys(_head_names(own, last=part == "last")))
        return tuple(names)

    def initial(self, names: tuple[str, ...]) -> Params:
        """The ranker's current values of `names` (detached copies); ``user`` = the OOV row."""
        own = dict(self.ranker.named_parameters())
        return {n: (self.oov_row() if n == USER else own[n]).detach().clone() for n in names}

    def oov_row(self) -> Tensor:
        """The OOV row [D] of the user-id table (what a new user is embedded with)."""
        emb = self.ranker.embedding
        vocab = self.ranker.schema.field(USER_FIELD).vocab
        return emb.weight[emb.vocab_offsets[vocab] + OOV]

    # ------------------------------------------------------------------ evaluation

    def embed(self, x: Tensor) -> Tensor:
        """Embeddings [B, F, D] of rows `x` [B, W] as a new user (user id OOV), without grad."""
        if self.user_cols is not None:
            x = x.clone()
            x[..., self.user_cols] = OOV
        with torch.no_grad():
            return self.ranker.embedding(x)

    def scores(self, params: Params, e: Tensor) -> Tensor:
        """Raw scores [T, B] of rows embedded as `e` [B, F, D] with `params` replacing the ranker's."""
        if USER in params:
            e = torch.where(self._slot_mask.to(e.device), params[USER], e)
        rest = {f"ranker.{k}": v for k, v in params.items() if k != USER}
        gates = self.ranker.__dict__.get("last_gates")  # MMoE keeps its last gates; keep the ranker's
        out = functional_call(self._module, rest, (e,))
        if gates is not None:
            self.ranker.last_gates = gates
        return torch.stack([out[t] for t in self.tasks])

    def scorer(self, params: Params) -> Scorer:
        """A user's personalised scorer: rows x [N, W] → {task: [N]} raw scores with `params`."""
        tasks = self.tasks

        def score(x: Tensor) -> dict[str, Tensor]:
            with torch.no_grad(), self.eval_mode():
                return dict(zip(tasks, self.scores(params, self.embed(x)).unbind(0)))

        return score

    def item_embedding(self, e: Tensor) -> Tensor:
        """The candidate-item part of `e` [B, F, D], flattened: [B, F_item * D]."""
        return e[:, list(self.item_fields)].flatten(1)

    def eval_mode(self) -> _EvalMode:
        """Context manager: the ranker in evaluation mode (no dropout) while adapting."""
        return _EvalMode(self.ranker)


class _EvalMode:
    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __enter__(self) -> None:
        self.was = self.module.training
        self.module.eval()

    def __exit__(self, *exc) -> None:
        self.module.train(self.was)


def _head_names(names: list[str], *, last: bool) -> list[str]:
    """Task-tower parameters of any ranker: ``towers.*`` / ``networks.*`` (ParallelMLP), ``heads.*``
    (multi-head) or ``outputs.*`` (task-conditioned); with `last`, only their final layer."""
    for prefix in ("towers.", "networks."):
        group = [n for n in names if n.startswith(prefix)]
        if group:
            if not last and prefix == "towers.":
                return group
            depth = max(int(n.rsplit(".", 1)[1]) for n in group)
            keep = {depth} if last else {depth - 1, depth}
            return [n for n in group if int(n.rsplit(".", 1)[1]) in keep]
    for prefix in ("heads.", "outputs."):
        group = [n for n in names if n.startswith(prefix)]
        if group:
            return group
    raise ConfigError("cannot find the task towers of this ranker (no towers., networks., heads. or outputs. "
                      "parameters); use scope 'bias', 'user' or 'all'")


# ---------------------------------------------------------------------- losses


def episode_loss(scores: Tensor, y: Tensor, mask: Tensor, tasks: tuple[str, ...], *, esmm: bool,
                 weights: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Masked multi-task loss of one user's rows, as in training (NaN = missing), vmap-friendly.

    Args:
        scores: [T, B] raw scores.
        y: [B, T] labels in the order of `tasks`.
        mask: [B] bool, False on padding rows.
        tasks: task names.
        esmm: like is the logit of p(like | click); its loss is ESMM's on all rows.
        weights: [T] task weights (default 1).
        reduction: ``mean`` over each task's observed rows, or ``sum`` (grows with the support
            size, so more events move the parameters further: a prior that shrinks less).

    Returns:
        Scalar: sum over tasks of weight * loss; a task with no observed row adds 0.
    """
    total = scores.new_zeros(())
    for j, task in enumerate(tasks):
        out = scores[j]
        if esmm and task == "like":
            click = y[:, tasks.index("click")]
            label = torch.where(torch.isnan(y[:, j]) & (click == 0), torch.zeros_like(click), y[:, j])
            per_row = esmm_bce(scores[tasks.index("click")], out, torch.nan_to_num(label, nan=0.0))
        else:
            label = y[:, j]
            target = torch.nan_to_num(label, nan=0.0)
            if TASK_KINDS[task] == "binary":
                per_row = F.binary_cross_entropy_with_logits(out, target, reduction="none")
            else:
                per_row = (out - target).square()
        observed = (~torch.isnan(label) & mask).to(scores.dtype)
        loss = (per_row * observed).sum()
        if reduction == "mean":
            loss = loss / observed.sum().clamp(min=1.0)
        total = total + (loss if weights is None else weights[j] * loss)
    return total
