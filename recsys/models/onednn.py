"""Float32 inference GEMMs through oneDNN with pre-packed weights: the CPU serving fast path.

PyTorch multiplies float32 matrices on x86 CPUs with MKL. MKL picks its kernels by CPU vendor:
on AMD processors it runs its AVX2 kernels even where AVX-512 exists. oneDNN, which PyTorch
also ships (it runs bfloat16 matmuls), picks by instruction set. On the AMD EPYC (Zen 5) our
benchmarks run on, one thread multiplies float32 matrices at ~120 GFLOP/s through ``torch.mm``
(1024³) and at ~280 through oneDNN (`scripts/_bench.py` measures both in every run).

This module wraps the two oneDNN operators PyTorch itself uses for frozen CPU inference
(``torch.ops.mkldnn._reorder_linear_weight`` packs a weight into oneDNN's blocked layout once;
``torch.ops.mkldnn._linear_pointwise`` runs ``x @ W + b`` with an optional fused ReLU on plain
float32 tensors). They have no autograd: only inference uses them, and a packed weight is a copy
that `PackedWeights` re-packs when the parameter it came from changes.

Example:
    >>> w, b = torch.randn(8, 4), torch.randn(4)
    >>> if available():
    ...     y = linear(torch.randn(3, 8), pack(w), b, relu=True)
    ...     y.shape
    ... else:
    ...     torch.Size([3, 4])
    torch.Size([3, 4])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def available() -> bool:
    """Whether this PyTorch build has oneDNN and the two operators (the x86 CPU wheels do)."""
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        return bool(torch.backends.mkldnn.is_available() and ops is not None
                    and hasattr(ops, "_linear_pointwise") and hasattr(ops, "_reorder_linear_weight"))
    except (AttributeError, RuntimeError):
        return False


def pack(weight: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """A weight [in, out] (what ``x @ weight`` multiplies by) in oneDNN's packed layout.

    Args:
        weight: float32 [in, out] on the CPU (a view is fine; it is copied).
        batch: the batch size the layout is tuned for (None: oneDNN's default).
    """
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().t().contiguous(), batch)


def linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, *, relu: bool) -> torch.Tensor:
    """``relu?(x @ W + bias)`` for x [B, in], `packed` from `pack`, bias [out] or None: [B, out]."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "relu" if relu else "none", [], "")


#: Whether a ``torch.func`` transform (vmap, grad) is running; a torch without this private
#: check counts as always running one, so the packs are never used inside a transform.
_transform_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: True)

#: Fewer rows than this run the plain path: per call, oneDNN costs more than MKL, and on a few
#: rows that outweighs its faster kernels (`scripts/bench_inference.py`: one row at a time runs at
#: 0.4x torch's speed, 64 rows at 1.07x, 512 at 1.75x).
MIN_ROWS = 32


def usable(x: torch.Tensor, module: torch.nn.Module) -> bool:
    """Whether a packed forward may run on `x` [..., B, in]: inference (eval mode, no autograd,
    no ``torch.func`` transform), float32 on the CPU, no autocast, at least `MIN_ROWS` rows."""
    return (not module.training and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and x.dim() >= 2 and x.shape[-2] >= MIN_ROWS
            and not torch.is_autocast_enabled("cpu") and not _transform_active())


class PackedWeights:
    """Packed copies of some parameters, kept in step with them.

    `get` re-packs after an in-place change of a parameter (an optimiser step, `load_state_dict`)
    and returns None, so the caller runs its plain path, while the module holds other tensors than
    the ones packed (``torch.func.functional_call`` with a cold-start adapter's weights). A deep
    copy of a module does not copy its packs (`__deepcopy__` gives None): the copy runs plainly.

    Args:
        current: the module's parameters now (called on every `get`).
        build: makes the packs from them.
    """

    def __init__(self, current: Callable[[], Sequence[torch.Tensor]], build: Callable[[], list]) -> None:
        self._current, self._build = current, build
        self._sources: list[torch.Tensor] = list(current())
        self._versions: list[int] | None = None
        self._packs: list = []

    def get(self) -> list | None:
        """The packs of the current parameter values, or None when the module holds other tensors."""
        now = self._current()
        if len(now) != len(self._sources) or any(a is not b for a, b in zip(now, self._sources)):
            return None
        versions = [p._version for p in now]
        if versions != self._versions:
            self._packs, self._versions = self._build(), versions
        return self._packs

    def __deepcopy__(self, memo: dict) -> None:
        return None
