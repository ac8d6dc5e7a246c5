"""`blackbox_maml`: the black-box encoder's output as an amortised initialisation for MAML steps.

The set encoder of `recsys.meta.blackbox` writes the new user's user vector and output offsets;
two gradient steps on the support loss (summed over rows, learned per-tensor rates selected on
validation users first) then refine them, and the encoder is meta-trained through those steps
(second order; Finn et al. ICML'17). Amortised inference where K is small, gradient descent's
consistency where K grows - in the spirit of LEO (Rusu et al., ICLR'19).

Example:
    >>> adapter = build_adapter("blackbox_maml", ranker, esmm=True)    # doctest: +SKIP
"""

from __future__ import annotations

from recsys.meta.blackbox import BlackBox


class BlackBoxMAML(BlackBox):
    """`BlackBox` with ``inner_steps=2`` (see `recsys.meta.blackbox`)."""

    name = "blackbox_maml"
    defaults = {**BlackBox.defaults, "inner_steps": 2}
