"""`anil`: Almost No Inner Loop, Raghu et al., "Rapid Learning or Feature Reuse?", ICLR'20.

Only the last layer adapts in the inner loop (here: the final linear layer of every task tower
and the output offsets); the body's features are reused as they are. Second-order
meta-gradients are cheap because the inner loop touches a few thousand parameters. With the
ranker frozen, this is MAML restricted to the head; the user vector is *not* adapted.

Example:
    >>> adapter = build_adapter("anil", ranker, esmm=True)             # doctest: +SKIP
"""

from __future__ import annotations

from recsys.meta.gradient import GRADIENT_DEFAULTS, GradientAdapter


class ANIL(GradientAdapter):
    """MAML over the last layers only (see `recsys.meta.gradient`)."""

    name = "anil"
    defaults = {**GRADIENT_DEFAULTS, "scope": "last"}
