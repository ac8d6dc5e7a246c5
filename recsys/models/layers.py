"""Building blocks shared by the rankers: a plain MLP and N independent MLPs run as one.

`ParallelMLP` holds N networks of the same shape (the experts of MMoE / PLE, or one tower per
task) as stacked weights [N, in, out] and runs them with batched matmuls (`torch.baddbmm`), so
N small networks cost a few large kernels instead of N times as many small ones. On one CPU
thread this is as fast as a loop of `nn.Linear` for wide layers and about twice as fast for the
narrow task towers.

`SplitInput` holds the input of one serving request's candidates in two parts: what all rows
share (the user and query embeddings) once, and what differs per row (the candidate item's).
A first layer over the concatenation is linear in it, ``W [r; c_b] + b = (W_r r + b) + W_c c_b``,
so `MLP.forward_split` and `ParallelMLP.forward_split` compute the shared part once and only the
candidate part per row; every later layer runs as usual.

`MLP.pack_cpu` and `ParallelMLP.pack_cpu` switch a network's CPU inference to oneDNN with
pre-packed weights (`recsys.models.onednn`: about twice torch's float32 matmul rate on AMD CPUs);
training, autograd and other devices keep the plain path.

Shapes: B batch, N parallel networks, D hidden width, I input width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recsys.models import onednn


@dataclass(frozen=True)
class SplitInput:
    """B rows of a first layer's input that share one part: row b is ``request + scatter(c_b)``.

    Attributes:
        request: [1, I] the shared part at its columns, zeros at the candidate columns.
        candidates: [B, I_c] each row's own part.
        candidate_cols: the I_c columns of the candidate part: a `slice` when they are
            contiguous (the weights are then read as views), else a LongTensor [I_c].

    Example:
        >>> h = SplitInput(torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[5.0], [6.0]]), slice(1, 2))
        >>> h.full()
        tensor([[1., 5., 2.],
                [1., 6., 2.]])
        >>> layer = nn.Linear(3, 4)
        >>> torch.allclose(h.linear(layer), layer(h.full()))
        True
    """

    request: torch.Tensor
    candidates: torch.Tensor
    candidate_cols: slice | torch.Tensor

    @property
    def rows(self) -> int:
        """B, the number of candidate rows."""
        return int(self.candidates.shape[0])

    def full(self) -> torch.Tensor:
        """The tiled input [B, I] (what a model without a split path reads)."""
        h = self.request.expand(self.rows, -1).clone()
        h[:, self.candidate_cols] = self.candidates
        return h

    def linear(self, layer: nn.Linear) -> torch.Tensor:
        """``layer`` applied to every row: [B, out]; the request part once."""
        shared = F.linear(self.request, layer.weight, layer.bias)  # [1, out]
        return torch.addmm(shared, self.candidates, self._rows(layer.weight.t(), 0))

    def stacked(self, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """N stacked layers (weight [N, I, out], bias [N, 1, out]) on every row: [N, B, out]."""
        n = weight.shape[0]
        shared = torch.baddbmm(bias, self.request.expand(n, -1, -1), weight)  # [N, 1, out]
        return torch.baddbmm(shared, self.candidates.expand(n, -1, -1), self._rows(weight, 1))

    def _rows(self, weight: torch.Tensor, dim: int) -> torch.Tensor:
        return _select(weight, self.candidate_cols, dim)

    def cols_key(self) -> tuple:
        """A hashable name of `candidate_cols` (packed first layers are cached by it)."""
        cols = self.candidate_cols
        return (cols.start, cols.stop, cols.step) if isinstance(cols, slice) else tuple(cols.tolist())


def _select(weight: torch.Tensor, cols: slice | torch.Tensor, dim: int) -> torch.Tensor:
    """`weight`'s entries `cols` along `dim` (a view for a slice)."""
    if isinstance(cols, slice):
        return weight[(slice(None),) * dim + (cols,)]
    return weight.index_select(dim, cols)


def _split_packs(cache: dict[tuple, onednn.PackedWeights], h: SplitInput, weight: Callable[[], torch.Tensor],
                 build: Callable[[torch.Tensor], list]) -> list | None:
    """Packs of a first layer's candidate part: ``build(weight()[:, candidate columns])``, made
    once per column layout and kept in `cache` (None while the module holds other weights)."""
    key = h.cols_key()
    if key not in cache:
        cols = h.candidate_cols
        cache[key] = onednn.PackedWeights(lambda: [weight()], lambda: build(_select(weight(), cols, 1)))
    return cache[key].get()


def _width_one(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """N width-1 layers (a tower's score: weight [N, in, 1], bias [N, 1, 1]) on h [N, B, in]: [N, B, 1].

    N dot products per row; as [N, 1, in] @ [N, in, B] they run ~3x faster than baddbmm's width-1 path.
    """
    return torch.baddbmm(bias.transpose(1, 2), weight.transpose(1, 2), h.transpose(1, 2)).transpose(1, 2)


class MLP(nn.Sequential):
    """Linear → ReLU → Dropout for each hidden width.

    Args:
        in_dim: input width.
        hidden: output width of each layer; the last one is `out_dim`.
        dropout: dropout rate after every layer (0 disables it).

    Shapes:
        [..., in_dim] → [..., hidden[-1]]

    Example:
        >>> MLP(8, (16, 4))(torch.zeros(2, 8)).shape
        torch.Size([2, 4])
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = width
        super().__init__(*layers)
        self.out_dim = in_dim
        self._packs: onednn.PackedWeights | None = None
        self._split_packs: dict[tuple, onednn.PackedWeights] = {}

    def _linears(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]

    def pack_cpu(self, enabled: bool = True) -> None:
        """Run CPU float32 inference through oneDNN with pre-packed weights (see the module doc);
        ``enabled=False`` drops the packs (the plain path again)."""
        self._packs = onednn.PackedWeights(lambda: [m.weight for m in self._linears()],
                                           lambda: [onednn.pack(m.weight.t()) for m in self._linears()]
                                           ) if enabled else None
        self._split_packs = {}

    def _packed(self, x: torch.Tensor) -> list | None:
        return self._packs.get() if self._packs is not None and onednn.usable(x, self) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packs = self._packed(x)
        if packs is None:
            return super().forward(x)
        for layer, packed in zip(self._linears(), packs):  # every Linear is followed by a ReLU
            x = onednn.linear(x, packed, layer.bias, relu=True)
        return x

    def forward_split(self, h: SplitInput) -> torch.Tensor:
        """`forward` of ``h.full()`` with the first layer's shared part computed once: [B, hidden[-1]]."""
        packs = self._packed(h.candidates)
        if packs is not None:
            first = self[0]
            split = _split_packs(self._split_packs, h, lambda: first.weight, lambda rows: [onednn.pack(rows.t())])
            if split is not None:
                shared = F.linear(h.request, first.weight, first.bias)  # [1, out]
                out = onednn.linear(h.candidates, split[0], shared[0], relu=True)
                for layer, packed in zip(self._linears()[1:], packs[1:]):
                    out = onednn.linear(out, packed, layer.bias, relu=True)
                return out
        out = h.linear(self[0])
        for i, layer in enumerate(self):
            if i:
                out = layer(out)
        return out


class ParallelMLP(nn.Module):
    """N independent MLPs of one shape, evaluated together.

    Hidden layers are Linear → ReLU → Dropout; with `out_dim` a last plain Linear follows (a
    task tower ending in one score). Each member is initialised like `nn.Linear`.

    Args:
        n: number of networks N.
        in_dim: input width.
        hidden: widths of the hidden layers (may be empty when `out_dim` is given).
        dropout: dropout rate after every hidden layer.
        out_dim: width of a final linear layer without activation; None ends at `hidden[-1]`.

    Shapes:
        input [B, in_dim] (the same input for every network) or [N, B, in_dim] (one each)
        → [N, B, out_dim or hidden[-1]]

    Example:
        >>> towers = ParallelMLP(3, 8, (16,), out_dim=1)
        >>> towers(torch.zeros(5, 8)).shape, towers(torch.zeros(3, 5, 8)).shape
        (torch.Size([3, 5, 1]), torch.Size([3, 5, 1]))
    """

    def __init__(self, n: int, in_dim: int, hidden: Sequence[int], dropout: float = 0.0, *,
                 out_dim: int | None = None) -> None:
        super().__init__()
        widths = [in_dim, *hidden] + ([out_dim] if out_dim is not None else [])
        if len(widths) < 2:
            raise ValueError("ParallelMLP needs at least one hidden layer or an out_dim")
        self.n, self.in_dim, self.out_dim = n, in_dim, widths[-1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default range
            self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))
        self.activate_last = out_dim is None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self._packs: onednn.PackedWeights | None = None
        self._split_packs: dict[tuple, onednn.PackedWeights] = {}

    def pack_cpu(self, enabled: bool = True) -> None:
        """Run CPU float32 inference through oneDNN with pre-packed weights (see the module doc):
        each member's layers as their own packed matmuls with the bias and ReLU fused;
        ``enabled=False`` drops the packs (the plain path again)."""
        self._packs = onednn.PackedWeights(
            lambda: [*self.weights, *self.biases],
            lambda: [[(onednn.pack(w[i]), b[i, 0]) for i in range(self.n)] for w, b in zip(self.weights, self.biases)]
        ) if enabled else None
        self._split_packs = {}

    def _packed(self, x: torch.Tensor) -> list | None:
        return self._packs.get() if self._packs is not None and onednn.usable(x, self) else None

    def _packed_layers(self, outs: list[torch.Tensor], packs: list, start: int) -> torch.Tensor:
        """Layers `start`.. of every member on its own input [B, in] (post-activation): [N, B, out].

        One member's layers run back to back; `packs[layer][i]` is member i's (packed weight, bias).
        """
        last = len(self.weights) - 1
        # a tower's score (width 1, no activation): N dot products per row, faster as one bmm after
        score = self.weights[last].shape[-1] == 1 and not self.activate_last and last >= start
        stop = last if score else last + 1
        for i in range(len(outs)):
            for layer in range(start, stop):
                weight, bias = packs[layer][i]
                outs[i] = onednn.linear(outs[i], weight, bias, relu=layer < last or self.activate_last)
        h = torch.stack(outs)
        return _width_one(h, self.weights[last], self.biases[last]) if score else h

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() == 2:  # one input shared by all N networks
            h = h.unsqueeze(0).expand(self.n, -1, -1)
        if h.dim() != 3 or h.shape[0] != self.n or h.shape[-1] != self.in_dim:
            raise ValueError(
                f"ParallelMLP of {self.n} networks with input width {self.in_dim} got input of shape "
                f"{tuple(h.shape)}; expected [B, {self.in_dim}] or [{self.n}, B, {self.in_dim}]"
            )
        packs = self._packed(h)
        if packs is not None:
            return self._packed_layers(list(h.unbind(0)), packs, 0)
        return self._after_first(torch.baddbmm(self.biases[0], h, self.weights[0]))

    def forward_split(self, h: SplitInput) -> torch.Tensor:
        """`forward` of ``h.full()`` with the first layer's shared part computed once: [N, B, out]."""
        if h.request.shape[-1] != self.in_dim:
            raise ValueError(f"ParallelMLP with input width {self.in_dim} got a split input of width "
                             f"{h.request.shape[-1]}")
        packs = self._packed(h.candidates)
        if packs is not None:
            split = _split_packs(self._split_packs, h, lambda: self.weights[0],
                                 lambda rows: [onednn.pack(member) for member in rows])
            if split is not None:
                shared = torch.baddbmm(self.biases[0], h.request.expand(self.n, -1, -1), self.weights[0])  # [N, 1, out]
                relu = len(self.weights) > 1 or self.activate_last
                outs = [onednn.linear(h.candidates, w, b, relu=relu) for w, b in zip(split, shared.squeeze(1))]
                return self._packed_layers(outs, packs, 1)
        return self._after_first(h.stacked(self.weights[0], self.biases[0]))

    def _after_first(self, h: torch.Tensor) -> torch.Tensor:
        """The rest of the networks from the first layer's pre-activation [N, B, out]."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if i and w.shape[-1] == 1 and not torch.is_grad_enabled():
                h = _width_one(h, w, b)  # its backward is not faster: training keeps baddbmm
            elif i:
                h = torch.baddbmm(b, h, w)  # [N, B, out]
            if i < last or self.activate_last:
                h = self.dropout(torch.relu_(h))  # in place on a fresh matmul output: autograd keeps the result
        return h

    def extra_repr(self) -> str:
        widths = [self.in_dim] + [w.shape[-1] for w in self.weights]
        return f"n={self.n}, widths={widths}"
