"""`metasgd`: Meta-SGD, Li et al., "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning", 2017.

MAML whose inner learning rate is a learned tensor of the parameters' shape: every element of
the adapted tensors gets its own step size (its direction is the gradient's; the rates are
learned in log space, so they stay positive and sit in `state_dict()` as ``log_lr.*``). The
rates learn, for instance, that a user's like offset should move fast and the click offset
(the same 1-in-5 rate for everyone on MovieLens) should not.

Example:
    >>> adapter = build_adapter("metasgd", ranker, esmm=True)          # doctest: +SKIP
    >>> adapter.inner_lrs()["output_bias"]                              # doctest: +SKIP
    tensor([...])
"""

from __future__ import annotations

from recsys.meta.gradient import GRADIENT_DEFAULTS, GradientAdapter


class MetaSGD(GradientAdapter):
    """MAML with per-element learned inner learning rates (see `recsys.meta.gradient`)."""

    name = "metasgd"
    defaults = {**GRADIENT_DEFAULTS, "per_element_lr": True}
