"""`fomaml`: first-order MAML (Finn et al., ICML'17, section 5.2).

MAML with the inner gradient treated as a constant, so the meta-gradient skips the Hessian
term: the query-loss gradient at the adapted parameters is applied to the initialisation.
Cheaper and more memory-frugal than `maml`; the inner learning rates are still learned, since
the adapted parameters depend on them linearly.

Example:
    >>> adapter = build_adapter("fomaml", ranker, esmm=True)           # doctest: +SKIP
"""

from __future__ import annotations

from recsys.meta.gradient import GRADIENT_DEFAULTS, GradientAdapter


class FOMAML(GradientAdapter):
    """MAML without second-order terms (see `recsys.meta.gradient`)."""

    name = "fomaml"
    defaults = {**GRADIENT_DEFAULTS, "first_order": True}
