"""Equal weighting: the plain sum of task losses, sum_t L_t.

The "EW" baseline of LibMTL (Lin & Zhang, JMLR'23) and of every paper in this folder.

Example:
    >>> EqualWeighting(("click", "like")).tasks
    ('click', 'like')
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from recsys.mtl.base import Weighting, backward_weighted


class EqualWeighting(Weighting):
    """Every present task gets weight 1; no config."""

    name = "equal"
    defaults = {}

    def _backward(self, names: list[str], losses: list[Tensor], shared: list[nn.Parameter], *, step: int) -> Tensor:
        w = torch.ones(len(names))
        backward_weighted(losses, w)
        return w
