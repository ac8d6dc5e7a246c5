"""Per-task losses with label masks, and the ESMM click-through & like likelihood.

Binary tasks (``TASK_KINDS[task] == "binary"``) take a logistic loss on logits; regression tasks
a squared error. A NaN label marks a row where the task is unobserved (rating on a row that was
not clicked): it adds no loss, and each task's loss is the mean over its observed rows only.

A task with **no** observed row in the batch is **left out** of the returned dict (rather than
given a constant zero). Every weighting strategy in `recsys.mtl` treats a missing task as "not in
this batch": it gets weight 0, its parameters get no gradient, and stateful strategies do not
update their statistics for it. This keeps a zero-gradient pseudo-loss out of the gradient
manipulating strategies (MGDA would otherwise put all weight on it).

ESMM (Ma et al., "Entire Space Multi-Task Model", SIGIR'18): with ``esmm=True`` the ``like``
output is read as the logit of p(like | click), and the like loss is the logistic loss of
p(click) * p(like | click) against "clicked and liked" over **all** impressions, which removes
the sample-selection bias of training p(like | click) on clicked rows only. It is computed in
log space, so it is finite for any finite logits:

    log p       = -softplus(-a) - softplus(-b)
    log (1 - p) = logsumexp(-a, -b, -a - b) - softplus(-a) - softplus(-b)

where a, b are the click and like logits.

Shape letters: B batch, T tasks.

Example:
    >>> import torch
    >>> out = {"click": torch.zeros(2), "rating": torch.tensor([3.0, 0.0])}
    >>> y = torch.tensor([[1.0, 4.0], [0.0, float("nan")]])
    >>> {t: round(v.item(), 4) for t, v in task_losses(out, y, ("click", "rating")).items()}
    {'click': 0.6931, 'rating': 1.0}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys.data.fields import TASK_KINDS
from recsys.errors import ConfigError, UnknownIdError


def task_losses(
    outputs: dict[str, Tensor], y: Tensor, tasks: tuple[str, ...], *, esmm: bool = False,
    denominators: Tensor | None = None,
) -> dict[str, Tensor]:
    """Masked mean loss of each task.

    Args:
        outputs: task -> [B] raw scores (logits for binary tasks, values for regression).
        y: [B, T] float labels in the order of `tasks`; NaN marks an unobserved label.
        tasks: task names, the column order of `y`.
        esmm: read ``outputs["like"]`` as the logit of p(like | click) and train
            p(click) * p(like | click) on all impressions (needs a ``click`` task).
        denominators: [T] divisors to use instead of this batch's `observed_counts`, e.g. the
            counts of a global batch split over processes (`recsys.distributed`). A task's loss
            is then its observed rows' loss sum / ``denominators[t]``, and it is kept iff
            ``denominators[t] > 0``, even with no observed row here.

    Returns:
        task -> scalar loss (mean over the task's observed rows), for every task with at least
        one observed row in the batch (or a positive denominator); a task with none is left out.

    Raises:
        UnknownIdError: a task not in ``TASK_KINDS`` or missing from `outputs`.
        ConfigError: ``esmm=True`` without both ``click`` and ``like`` tasks.
        ValueError: shapes of `outputs` and `y` disagree.
    """
    _check_inputs(outputs, y, tasks, esmm)
    losses: dict[str, Tensor] = {}
    for j, task in enumerate(tasks):
        out = outputs[task]
        if esmm and task == "like":
            label = ctcvr_label(y, tasks)
            target = torch.nan_to_num(label, nan=0.0)
            per_row = esmm_bce(outputs["click"], out, target)
        else:
            label = y[:, j]
            target = torch.nan_to_num(label, nan=0.0)  # masked rows must not leak NaN grads
            if TASK_KINDS[task] == "binary":
                per_row = F.binary_cross_entropy_with_logits(out, target, reduction="none")
            else:
                per_row = (out - target).square()
        observed = ~torch.isnan(label)
        n = int(observed.sum()) if denominators is None else float(denominators[j])
        if n == 0:
            continue
        losses[task] = (per_row * observed).sum() / n
    return losses


def observed_counts(y: Tensor, tasks: tuple[str, ...], *, esmm: bool = False) -> Tensor:
    """How many rows of `y` hold an observed label of each task (what `task_losses` divides by).

    Args:
        y: [B, T] labels in the order of `tasks`; NaN = unobserved.
        tasks: task names, the column order of `y`.
        esmm: count ``like`` by its ESMM label (`ctcvr_label`) over all impressions.

    Returns:
        [T] float64 counts.
    """
    observed = ~torch.isnan(y)
    if esmm and {"click", "like"} <= set(tasks):
        observed[:, tasks.index("like")] = ~torch.isnan(ctcvr_label(y, tasks))
    return observed.sum(dim=0).double()


def ctcvr_label(y: Tensor, tasks: tuple[str, ...]) -> Tensor:
    """The ESMM "clicked and liked" label over all impressions.

    The like label where it is observed; 0 where it is missing but the row was not clicked
    (an unclicked impression is not liked); NaN where neither tells.

    Args:
        y: [B, T] labels in the order of `tasks`.
        tasks: task names (must hold ``click`` and ``like``).

    Returns:
        [B] float labels, NaN where unknown.
    """
    click = y[:, tasks.index("click")]
    like = y[:, tasks.index("like")]
    return torch.where(torch.isnan(like) & (click == 0), torch.zeros_like(like), like)


def esmm_bce(click_logit: Tensor, like_logit: Tensor, target: Tensor) -> Tensor:
    """Logistic loss of p = sigmoid(a) * sigmoid(b) against `target`, in log space.

    Args:
        click_logit: [B] logits a of p(click).
        like_logit: [B] logits b of p(like | click).
        target: [B] labels in [0, 1].

    Returns:
        [B] per-row loss ``-(t log p + (1 - t) log(1 - p))``, finite for finite logits.
    """
    sp_a, sp_b = F.softplus(-click_logit), F.softplus(-like_logit)
    log_p = -sp_a - sp_b
    log_not_p = (
        torch.logsumexp(torch.stack([-click_logit, -like_logit, -click_logit - like_logit]), dim=0)
        - sp_a
        - sp_b
    )
    return -(target * log_p + (1.0 - target) * log_not_p)


def predict_proba(
    outputs: dict[str, Tensor], tasks: tuple[str, ...], esmm: bool = False
) -> dict[str, Tensor]:
    """Per-task predictions from raw model outputs.

    Args:
        outputs: task -> [B] raw scores.
        tasks: tasks to predict.
        esmm: ``like`` is the logit of p(like | click); its prediction is then the unconditional
            p(like) = p(click) * p(like | click).

    Returns:
        task -> [B] probabilities for binary tasks, values for regression tasks.
    """
    for task in tasks:
        _check_task(task, outputs)
    if esmm and not {"click", "like"} <= set(tasks):
        raise ConfigError(f"esmm=True needs tasks 'click' and 'like', got {list(tasks)}")
    preds: dict[str, Tensor] = {}
    for task in tasks:
        out = outputs[task]
        if esmm and task == "like":
            preds[task] = torch.sigmoid(outputs["click"]) * torch.sigmoid(out)
        elif TASK_KINDS[task] == "binary":
            preds[task] = torch.sigmoid(out)
        else:
            preds[task] = out
    return preds


def _check_task(task: str, outputs: dict[str, Tensor]) -> None:
    if task not in TASK_KINDS:
        raise UnknownIdError(f"unknown task {task!r} (known tasks: {', '.join(TASK_KINDS)})")
    if task not in outputs:
        raise UnknownIdError(
            f"model outputs have no task {task!r} (outputs: {', '.join(outputs) or 'none'})"
        )


def _check_inputs(outputs: dict[str, Tensor], y: Tensor, tasks: tuple[str, ...], esmm: bool) -> None:
    if y.ndim != 2 or y.shape[1] != len(tasks):
        raise ValueError(
            f"labels y must be [B, T] with T = {len(tasks)} tasks {list(tasks)}, got shape {tuple(y.shape)}"
        )
    for task in tasks:
        _check_task(task, outputs)
        if outputs[task].shape != (y.shape[0],):
            raise ValueError(
                f"output {task!r} has shape {tuple(outputs[task].shape)}, expected ({y.shape[0]},) "
                f"to match {y.shape[0]} label rows"
            )
    if esmm and not {"click", "like"} <= set(tasks):
        raise ConfigError(
            f"esmm=True needs tasks 'click' and 'like', got {list(tasks)}; drop esmm or add the task"
        )
