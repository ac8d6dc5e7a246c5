"""Weighting strategies by name: one line here per strategy file.

Example:
    >>> w = build_weighting("dwa", ("click", "like"), temperature=2.0)
    >>> type(w).__name__
    'DWAWeighting'
"""

from __future__ import annotations

from typing import Any

from recsys.errors import ConfigError
from recsys.mtl.base import Weighting
from recsys.mtl.cagrad import CAGradWeighting
from recsys.mtl.dwa import DWAWeighting
from recsys.mtl.equal import EqualWeighting
from recsys.mtl.gradnorm import GradNormWeighting
from recsys.mtl.mgda import MGDAWeighting
from recsys.mtl.pcgrad import PCGradWeighting
from recsys.mtl.static import StaticWeighting
from recsys.mtl.uncertainty import UncertaintyWeighting

#: name -> strategy class.
WEIGHTINGS: dict[str, type[Weighting]] = {
    cls.name: cls
    for cls in (
        StaticWeighting,
        EqualWeighting,
        UncertaintyWeighting,
        GradNormWeighting,
        DWAWeighting,
        PCGradWeighting,
        MGDAWeighting,
        CAGradWeighting,
    )
}


def build_weighting(name: str, tasks: tuple[str, ...], **config: Any) -> Weighting:
    """Construct the strategy registered as `name`.

    Args:
        name: a key of `WEIGHTINGS`.
        tasks: task names the strategy balances.
        **config: the strategy's options (see its class docstring).

    Returns:
        The strategy, a `torch.nn.Module`.

    Raises:
        ConfigError: an unknown name or option, or an invalid option value.
    """
    if name not in WEIGHTINGS:
        raise ConfigError(f"unknown weighting {name!r} (known: {', '.join(WEIGHTINGS)})")
    return WEIGHTINGS[name](tuple(tasks), **config)
