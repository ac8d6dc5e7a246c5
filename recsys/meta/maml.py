"""`maml`: Model-Agnostic Meta-Learning, Finn et al., ICML'17, second order.

Meta-learns the initialisation θ_0 of the adapted tensors (by default the per-user *user
vector*, which replaces the OOV user-id embedding, the last layer of each task tower and the
per-task output offsets) so that three gradient steps on a new user's first K events fit their
later ones; the meta-gradient flows through the inner steps (second order, via `torch.func`).
The support loss is summed over rows, so one event moves θ less than twenty (with a mean, K = 1
overshoots and does harm). The inner learning rate is selected on validation users and then
learned, one per tensor, in log space (as in MAML++, Antoniou et al. ICLR'19), so it is never
hand-fixed.

Example:
    >>> adapter = build_adapter("maml", ranker, esmm=True, steps=3)    # doctest: +SKIP
    >>> adapter.fit(warm_episodes, valid_episodes)                      # doctest: +SKIP
    >>> adapter.adapt(support_x, support_y)(candidates_x)["like"]       # doctest: +SKIP
"""

from __future__ import annotations

from recsys.meta.gradient import GRADIENT_DEFAULTS, GradientAdapter


class MAML(GradientAdapter):
    """Second-order MAML over the scope ``user+last`` (see `recsys.meta.gradient`)."""

    name = "maml"
    defaults = {**GRADIENT_DEFAULTS}
