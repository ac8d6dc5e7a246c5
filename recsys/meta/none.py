"""`none`: the global ranker, no adaptation (the baseline every adapter is measured against)."""

from __future__ import annotations

import torch

from recsys.meta.base import Adapter, Scorer


class NoAdaptation(Adapter):
    """Scores every user with the global ranker; the support set is ignored.

    Example:
        >>> scorer = NoAdaptation(ranker).adapt(support_x, support_y)   # doctest: +SKIP
    """

    name = "none"

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> Scorer:
        self.check_support(support_x, support_y)  # a bad support set is an error here too
        return self.base_scorer()
