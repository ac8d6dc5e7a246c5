"""Embedding of the categorical inputs `x` [B, W] (layout in `recsys.data.fields.Schema`).

Every vocabulary has one table, shared by all fields of that vocabulary (the candidate item and
the query item look up the same rows), and all tables are stored as one concatenated matrix:
vocabulary v owns rows [offset_v, offset_v + size_v). A column's global row is then simply
`x + offset`, so the whole lookup is one `index_select` (and its backward one `index_add`,
several times faster on CPU than `F.embedding`'s or `F.embedding_bag`'s sort-based backward).

Single-valued fields use their row as is; id 0 of a single-valued field (NONE, e.g. "no query
item yet") has a learned row of its own. Multi-valued fields (width > 1) are mean-pooled over
their non-PAD ids; a field holding only PAD embeds as zeros.

Shapes: B batch, W columns of x, F fields, D embedding dim.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from recsys.data.fields import PAD, SIDES, Schema
from recsys.errors import UnknownIdError


@dataclass(frozen=True)
class _Plan:
    """How to embed the fields of some sides: which x columns, in which output order."""

    fields: tuple[str, ...]  # output order: single-valued fields, then multi-valued by width
    cols: torch.Tensor  # [W_s] columns of x, in output order
    offsets: torch.Tensor  # [W_s] first row of each column's vocabulary in the table
    sizes: torch.Tensor  # [W_s] number of valid ids of each column's field
    num_single: int
    groups: tuple[tuple[int, int], ...]  # (number of fields, width) of each multi-valued group


class FeatureEmbedding(nn.Module):
    """One embedding table per vocabulary; multi-valued fields mean-pooled ignoring PAD.

    The F axis of the output lists single-valued fields first (schema order), then multi-valued
    fields grouped by width; `fields` names it. Models never depend on that order, only
    `merge` and per-field diagnostics do.

    Args:
        schema: the layout of `x`.
        dim: embedding size D of every field.
        init_std: standard deviation of the normal initialisation.

    Attributes:
        fields: field names along the F axis of `forward`'s output.
        out_dim: F * D, the width of the flattened output.
        check_ids: when True (default) ids outside a field's vocabulary raise `UnknownIdError`
            instead of silently reading another vocabulary's rows; switch off under `torch.func.vmap`.

    Example:
        >>> from recsys.data.fields import Field, Schema
        >>> schema = Schema(fields=(Field("f_item_id", "item", "item", 10),
        ...                         Field("f_item_genres", "item", "genre", 5, width=3),
        ...                         Field("f_query_id", "query", "item", 10)), tasks=("click",))
        >>> emb = FeatureEmbedding(schema, dim=4)
        >>> x = torch.tensor([[3, 2, 4, 0, 3]])        # item 3, genres {2, 4}, query item 3
        >>> e = emb(x)                                   # [B, F, D]
        >>> e.shape, emb.fields
        (torch.Size([1, 3, 4]), ('f_item_id', 'f_query_id', 'f_item_genres'))
        >>> bool(torch.equal(e[0, 0], e[0, 1]))          # shared vocab: one table
        True
        >>> emb.embed(x, sides=("query",)).shape         # only the query fields
        torch.Size([1, 1, 4])
    """

    def __init__(self, schema: Schema, dim: int = 16, *, init_std: float = 0.1) -> None:
        super().__init__()
        self.schema, self.dim = schema, dim
        self.vocab_offsets: dict[str, int] = {}
        rows = 0
        for vocab, size in schema.vocab_sizes.items():
            self.vocab_offsets[vocab] = rows
            rows += size
        self.weight = nn.Parameter(torch.randn(rows, dim) * init_std)
        self.check_ids = True
        self._plans: dict[tuple[frozenset[str], torch.device], _Plan] = {}
        self.fields = self.field_order()
        self.out_dim = len(self.fields) * dim

    def table(self, vocab: str) -> torch.Tensor:
        """The rows of one vocabulary: [size, D] (a view of the shared matrix)."""
        start = self.vocab_offsets[vocab]
        return self.weight[start : start + self.schema.vocab_sizes[vocab]]

    def field_order(self, sides: Iterable[str] | None = None) -> tuple[str, ...]:
        """Names of the fields `embed(x, sides)` returns, in output order."""
        chosen = [f for f in self.schema.fields if sides is None or f.side in set(sides)]
        multi = sorted((f for f in chosen if f.width > 1), key=lambda f: f.width)  # stable
        return tuple(f.name for f in chosen if f.width == 1) + tuple(f.name for f in multi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed every field.

        Args:
            x: [B, W] integer ids.

        Returns:
            [B, F, D], fields in the order of `fields`.
        """
        return self.embed(x)

    def embed(self, x: torch.Tensor, sides: Iterable[str] | None = None) -> torch.Tensor:
        """Embed only the fields of some sides (all when None), e.g. ``("user", "query")``.

        Serving embeds the user and query fields of a request once and the item fields of its
        candidates, then joins them with `merge`.

        Args:
            x: [B, W] integer ids in the full layout (columns of other sides are not read).
            sides: any of ``user``, ``item``, ``query``, ``context``.

        Returns:
            [B, F_s, D], fields in the order of `field_order(sides)`.
        """
        self._check_layout(x)
        plan = self._plan(sides, x.device)
        batch, dim = x.shape[0], self.dim
        if not plan.fields:  # e.g. no context fields in this schema
            return self.weight.new_zeros(batch, 0, dim)
        ids = x.index_select(1, plan.cols)  # [B, W_s]
        if self.check_ids and ids.numel():
            self._check_ids(ids, plan)
        rows = self.weight.index_select(0, (ids + plan.offsets).view(-1)).view(batch, ids.shape[1], dim)
        parts = [rows[:, : plan.num_single]]
        start = plan.num_single
        for n, width in plan.groups:  # multi-valued fields: mean over the non-PAD ids
            stop = start + n * width
            keep = ids[:, start:stop].ne(PAD).view(batch, n, width).to(rows.dtype)
            weights = keep / keep.sum(2, keepdim=True).clamp_min(1.0)
            parts.append((rows[:, start:stop].view(batch, n, width, dim) * weights.unsqueeze(-1)).sum(2))
            start = stop
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def merge(self, parts: Mapping[tuple[str, ...], torch.Tensor]) -> torch.Tensor:
        """Join embeddings of disjoint sides into the full [B, F, D] of `forward`.

        Args:
            parts: ``{sides: embed(x, sides)}`` covering every side of the schema once; a part
                with batch 1 is broadcast (one request's user and query over its candidates).

        Returns:
            [B, F, D] with B the largest batch among the parts.

        Example:
            >>> # user = emb.embed(x_request, ("user", "query"))     [1, F_u, D]
            >>> # items = emb.embed(x_candidates, ("item",))         [N, F_i, D]
            >>> # e = emb.merge({("user", "query"): user, ("item",): items})   [N, F, D]
        """
        names: list[str] = []
        for sides in parts:
            names += self.field_order(sides)
        if sorted(names) != sorted(self.fields):
            raise ValueError(
                f"merge needs every field exactly once; parts cover {sorted(names)} "
                f"but the schema has {sorted(self.fields)}"
            )
        batch = max(p.shape[0] for p in parts.values())
        joined = torch.cat([p.expand(batch, -1, -1) for p in parts.values()], 1)
        order = torch.tensor([names.index(f) for f in self.fields], device=joined.device)
        return joined.index_select(1, order)

    def _plan(self, sides: Iterable[str] | None, device: torch.device) -> _Plan:
        chosen = frozenset(SIDES if sides is None else sides)
        unknown = chosen - set(SIDES)
        if unknown:
            raise ValueError(f"unknown side(s) {sorted(unknown)}; sides are {', '.join(SIDES)}")
        key = (chosen, device)
        if key not in self._plans:
            names = self.field_order(chosen)
            cols, offsets, sizes, groups = [], [], [], []
            for name in names:
                f = self.schema.field(name)
                span = self.schema.slice(name)
                cols += range(span.start, span.stop)
                offsets += [self.vocab_offsets[f.vocab]] * f.width
                sizes += [f.size] * f.width
                if f.width > 1:
                    if groups and groups[-1][1] == f.width:
                        groups[-1] = (groups[-1][0] + 1, f.width)
                    else:
                        groups.append((1, f.width))
            as_long = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
            self._plans[key] = _Plan(
                fields=names, cols=as_long(cols), offsets=as_long(offsets), sizes=as_long(sizes),
                num_single=sum(self.schema.field(n).width == 1 for n in names), groups=tuple(groups),
            )
        return self._plans[key]

    def _check_layout(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.schema.width:
            got = x.shape[1] if x.dim() == 2 else f"shape {tuple(x.shape)}"
            of = f" of {self.schema.dataset}" if self.schema.dataset else ""
            raise ValueError(
                f"x has {got} columns but the schema{of} has {self.schema.width} "
                f"(fields {', '.join(f.name for f in self.schema.fields)}); expected x of shape [B, W]"
            )
        if x.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"x must hold integer ids (int64 or int32), got dtype {x.dtype}")

    def _check_ids(self, ids: torch.Tensor, plan: _Plan) -> None:
        high = ids.amax(0)
        low = ids.amin(0)
        bad = (high >= plan.sizes) | (low < 0)
        if bool(bad.any()):
            col = int(bad.nonzero()[0, 0])
            value = int(high[col]) if high[col] >= plan.sizes[col] else int(low[col])
            column = int(plan.cols[col])
            name = next(f.name for f in self.schema.fields if self.schema.slice(f.name).start <= column
                        < self.schema.slice(f.name).stop)
            raise UnknownIdError(
                f"field {name} (column {column} of x) holds id {value} outside its vocabulary "
                f"[0, {int(plan.sizes[col])}); map unseen values to OOV (1) when building features"
            )
