"""Multi-task learning: per-task losses, loss weighting / gradient balancing strategies, and
diagnostics of negative transfer.

Example:
    >>> from recsys.mtl import build_weighting, task_losses         # doctest: +SKIP
    >>> weighting = build_weighting("uncertainty", schema.tasks)    # doctest: +SKIP
    >>> losses = task_losses(model(x), y, schema.tasks)             # doctest: +SKIP
    >>> weights = weighting.backward(losses, list(model.shared_parameters()), step=step)  # doctest: +SKIP
"""

from recsys.mtl.base import Weighting
from recsys.mtl.diagnostics import gate_entropy, gate_utilisation, grad_cosine
from recsys.mtl.losses import predict_proba, task_losses
from recsys.mtl.registry import WEIGHTINGS, build_weighting

__all__ = [
    "WEIGHTINGS",
    "Weighting",
    "build_weighting",
    "gate_entropy",
    "gate_utilisation",
    "grad_cosine",
    "predict_proba",
    "task_losses",
]
