"""The one interface of every loss-weighting / gradient-balancing strategy.

A strategy turns per-task losses into gradients. `Weighting.backward` does the backward pass
itself: each task-specific parameter gets its own task's weighted gradient, and the *shared*
parameters get the strategy's combined gradient (a weighted sum for loss-weighting methods,
a manipulated gradient for PCGrad). Gradients accumulate into ``.grad`` as ``loss.backward()``
would, so the caller zeroes them as usual. Modelled on LibMTL's ``weighting/`` (Lin & Zhang,
"LibMTL: A Python Library for Multi-Task Learning", JMLR'23): one file per strategy over this
base, except that all state lives in parameters or buffers so `state_dict()` checkpoints it.

A task absent from ``losses`` (no observed label in the batch, see `recsys.mtl.losses`) gets
weight 0 and no gradient; the strategy works on the present tasks only. Keep the strategy on
the model's device (``weighting.to(device)``) and give `extra_parameters()` to the optimizer.

Shape letters: T tasks (present ones), D flattened size of the shared parameters.

Example:
    >>> w = EqualWeighting(("click", "like"))                        # doctest: +SKIP
    >>> weights = w.backward(losses, list(model.shared_parameters()), step=0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from recsys.data.fields import TASK_KINDS
from recsys.errors import ConfigError, UnknownIdError


class Weighting(nn.Module):
    """Base class: validates tasks and config, and owns the gradient plumbing.

    Subclasses set `name` and `defaults` (every accepted config key with its default value)
    and implement `_backward`.

    Args:
        tasks: the task names this strategy balances (keys of the losses it will be given).
        **config: strategy options; a key not in `defaults` raises `ConfigError`.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, tasks: tuple[str, ...], **config: Any) -> None:
        super().__init__()
        tasks = tuple(tasks)
        if not tasks:
            raise ConfigError(f"weighting {self.name!r} needs at least one task, got none")
        if len(set(tasks)) != len(tasks):
            raise ConfigError(f"weighting {self.name!r} got duplicate tasks: {list(tasks)}")
        for task in tasks:
            if task not in TASK_KINDS:
                raise ConfigError(f"unknown task {task!r} (known tasks: {', '.join(TASK_KINDS)})")
        for key in config:
            if key not in self.defaults:
                known = ", ".join(self.defaults) or "none"
                raise ConfigError(f"unknown option {key!r} for weighting {self.name!r} (known: {known})")
        self.tasks = tasks
        self.config: dict[str, Any] = {**self.defaults, **config}

    # -- public interface -------------------------------------------------------------------

    def backward(
        self, losses: dict[str, Tensor], shared_params: list[nn.Parameter], *, step: int
    ) -> dict[str, float]:
        """Backward pass of the weighted multi-task objective.

        Args:
            losses: task -> scalar loss with a graph to the model; tasks may be missing.
            shared_params: the model's shared parameters (those every task backpropagates into).
            step: global training step (seeds PCGrad's projection order).

        Returns:
            task -> weight used (finite, >= 0) for every task of the strategy; 0 for a task
            missing from `losses`.

        Raises:
            UnknownIdError: a loss for a task the strategy was not built with.
            ValueError: a loss that is not a scalar with a graph.
        """
        for task, loss in losses.items():
            if task not in self.tasks:
                raise UnknownIdError(
                    f"loss for task {task!r} given to weighting {self.name!r} of tasks {list(self.tasks)}"
                )
            if loss.ndim != 0 or not loss.requires_grad:
                raise ValueError(f"loss {task!r} must be a scalar with a graph, got shape {tuple(loss.shape)}, "
                                 f"requires_grad={loss.requires_grad}")
        names = [t for t in self.tasks if t in losses]
        weights = dict.fromkeys(self.tasks, 0.0)
        if not names:
            return weights
        shared = _unique_trainable(shared_params)
        used = safe_weights(self._backward(names, [losses[t] for t in names], shared, step=step))
        weights.update(zip(names, used.tolist()))
        return weights

    def epoch_end(self, epoch_losses: dict[str, float]) -> None:
        """Hook called once per epoch with each task's mean training loss (used by DWA)."""

    def extra_parameters(self) -> list[nn.Parameter]:
        """Learnable parameters of the strategy itself, for the trainer's optimizer."""
        return list(self.parameters())

    # -- for subclasses ---------------------------------------------------------------------

    def _backward(self, names: list[str], losses: list[Tensor], shared: list[nn.Parameter], *, step: int) -> Tensor:
        """Do the backward pass for the present tasks `names`; return their weights [T]."""
        raise NotImplementedError

    def _index(self, names: Sequence[str]) -> Tensor:
        """[T] positions of `names` in `self.tasks`."""
        return torch.tensor([self.tasks.index(n) for n in names], dtype=torch.long)

    def _check_number(self, key: str, *, low: float = -math.inf, high: float = math.inf,
                      low_open: bool = False) -> float:
        """The config value `key` as a finite float in [low, high] (or (low, high])."""
        value = self.config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"weighting {self.name!r}: option {key!r} must be a finite number, got {value!r}")
        if value < low or value > high or (low_open and value == low):
            bound = f"{'(' if low_open else '['}{low}, {high}]"
            raise ConfigError(f"weighting {self.name!r}: option {key!r} = {value} is outside {bound}")
        return float(value)


# -- gradient helpers shared by strategies and diagnostics ----------------------------------


def safe_weights(weights: Tensor) -> Tensor:
    """Last guard of the weight contract: NaN/inf/negative entries become 0.

    Args:
        weights: [T] weights.

    Returns:
        [T] detached float weights, each finite and >= 0.
    """
    w = torch.nan_to_num(weights.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
    return w.clamp_min(0.0)


def task_gradients(losses: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
    """Per-task gradients on `params`, flattened; the graph is kept for later passes.

    Args:
        losses: T scalar losses.
        params: parameters to differentiate (D elements in all).

    Returns:
        [T, D] gradients (zeros where a loss does not reach a parameter).
    """
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
        rows.append(torch.cat([
            (torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)
        ]))
    return torch.stack(rows)


def backward_weighted(losses: Sequence[Tensor], weights: Tensor) -> None:
    """One ordinary backward of ``sum_t w_t L_t``: every parameter gets its weighted gradient.

    Args:
        losses: T scalar losses.
        weights: [T] weights (treated as constants).
    """
    w = weights.detach().to(losses[0].device, losses[0].dtype)
    torch.stack(list(losses)).mul(w).sum().backward()


def backward_split(losses: Sequence[Tensor], weights: Tensor, shared: Sequence[nn.Parameter],
                   shared_grad: Tensor) -> None:
    """Task-specific parameters get ``sum_t w_t grad L_t``; shared ones get `shared_grad`.

    The task-specific backward is pruned to the non-shared leaves, so it does not walk the
    shared trunk again after the per-task gradients were taken.

    Args:
        losses: T scalar losses (graphs still alive).
        weights: [T] loss weights for the task-specific parameters.
        shared: the shared parameters (D elements in all).
        shared_grad: [D] combined gradient of the shared parameters, added to their ``.grad``.
    """
    shared_ids = {id(p) for p in shared}
    heads = [p for p in reachable_leaves(losses) if id(p) not in shared_ids]
    if heads:
        w = weights.detach().to(losses[0].device, losses[0].dtype)
        torch.autograd.backward(torch.stack(list(losses)).mul(w).sum(), inputs=heads)
    offset = 0
    for p in shared:
        g = shared_grad[offset:offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.add_(g)


def reachable_leaves(roots: Iterable[Tensor]) -> list[Tensor]:
    """Leaf tensors requiring grad that the autograd graphs of `roots` reach, in first-seen order."""
    seen_nodes: set[int] = set()
    leaves: dict[int, Tensor] = {}
    stack = [r.grad_fn for r in roots if r.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if variable is not None:
            leaves.setdefault(id(variable), variable)
        stack.extend(nxt for nxt, _ in node.next_functions)
    return list(leaves.values())


def select_params(shared: list[nn.Parameter], spec: str | int) -> list[nn.Parameter]:
    """A subset of the shared parameters to measure gradients on.

    Args:
        shared: shared parameters, input side first.
        spec: ``"all"``; ``"last"`` = the last parameter with >= 2 dims (the last shared layer's
            weight; the last parameter if none has 2 dims); or an int k = the last k tensors.

    Returns:
        The selected parameters (at least one when `shared` is non-empty).
    """
    if spec == "all" or not shared:
        return list(shared)
    if spec == "last":
        matrices = [p for p in shared if p.ndim >= 2]
        return [matrices[-1] if matrices else shared[-1]]
    return list(shared[-int(spec):])


def check_param_spec(name: str, spec: Any) -> None:
    """Raise `ConfigError` unless `spec` is ``"all"``, ``"last"`` or a positive int."""
    ok = spec in ("all", "last") or (isinstance(spec, int) and not isinstance(spec, bool) and spec > 0)
    if not ok:
        raise ConfigError(f"weighting {name!r}: option 'grad_params' must be 'all', 'last' or a "
                          f"positive int, got {spec!r}")


def _unique_trainable(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    out: dict[int, nn.Parameter] = {}
    for p in params:
        if p.requires_grad:
            out.setdefault(id(p), p)
    return list(out.values())
