"""Two-tower candidate retriever (Yi et al., "Sampling-bias-corrected neural modeling for large
corpus item recommendations", RecSys'19; Covington et al., RecSys'16).

The user tower reads the user's features, the query item (what they just watched) and their
recent history (the last L clicked items, mean-pooled through the shared item-id table); the
item tower reads the item's id and features. Both end in an L2-normalised vector, so retrieval
is maximum inner product (cosine) over the catalogue, served by `recsys.retrieval`.

Trained with in-batch sampled softmax: the other positives of a batch are the negatives, and
each logit is corrected by −log q(item), the item's sampling probability (its frequency among
training positives), which removes the popularity bias in-batch negatives introduce.

A new user is embedded the same way from their support set: user id OOV, history = the items
they engaged with, query item = the last one.

Shapes: B batch, W columns of x, L history length, D output dimension, I items.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.fields import PAD, Schema
from recsys.models.base import _check_option, make_config
from recsys.models.embeddings import FeatureEmbedding
from recsys.models.layers import MLP


@dataclass(frozen=True)
class TwoTowerConfig:
    """Options of the retriever.

    Attributes:
        dim: embedding size of each input field.
        out_dim: size D of the retrieval vectors.
        hidden: hidden widths of both towers.
        history: number L of recent clicks the user tower reads.
        temperature: softmax temperature of the normalised dot product.
    """

    dim: int = 32
    out_dim: int = 64
    hidden: tuple[int, ...] = (128,)
    history: int = 20
    temperature: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        for f in dataclasses.fields(self):
            _check_option(type(self).__name__, f.name, getattr(self, f.name), f.default)


class TwoTower(nn.Module):
    """User and item towers over one shared embedding table.

    Args:
        schema: layout of x (user, item and query fields).
        config: `TwoTowerConfig`.

    Example:
        >>> from recsys.data.fields import Field, Schema
        >>> schema = Schema(fields=(Field("f_user_id", "user", "user", 5), Field("f_item_id", "item", "item_id", 9),
        ...                         Field("f_query_id", "query", "item_id", 9)), tasks=("click",))
        >>> model = TwoTower(schema, TwoTowerConfig(dim=4, out_dim=8, hidden=(16,), history=3))
        >>> x = torch.tensor([[2, 3, 4]]); history = torch.tensor([[0, 4, 5]])
        >>> model.user_vectors(x, history).shape, model.item_vectors(x).shape
        (torch.Size([1, 8]), torch.Size([1, 8]))
    """

    def __init__(self, schema: Schema, config: TwoTowerConfig | None = None) -> None:
        super().__init__()
        self.schema, self.config = schema, config or TwoTowerConfig()
        c = self.config
        self.embedding = FeatureEmbedding(schema, c.dim)
        self.item_vocab = schema.field("f_item_id").vocab
        n_user = len(self.embedding.field_order(("user", "query")))
        n_item = len(self.embedding.field_order(("item",)))
        self.user_tower = nn.Sequential(MLP(n_user * c.dim + c.dim, c.hidden), nn.Linear(c.hidden[-1], c.out_dim))
        self.item_tower = nn.Sequential(MLP(n_item * c.dim, c.hidden), nn.Linear(c.hidden[-1], c.out_dim))

    def history_embedding(self, history: torch.Tensor) -> torch.Tensor:
        """Mean of the history items' id embeddings, ignoring PAD: [B, L] → [B, dim]."""
        table = self.embedding.table(self.item_vocab)
        rows = table.index_select(0, history.reshape(-1)).view(*history.shape, -1)
        keep = history.ne(PAD).unsqueeze(-1).to(rows.dtype)
        return (rows * keep).sum(1) / keep.sum(1).clamp_min(1.0)

    def user_vectors(self, x: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """[B, W] user/query inputs + [B, L] history → [B, D] unit vectors."""
        e = self.embedding.embed(x, ("user", "query")).flatten(1)
        h = torch.cat([e, self.history_embedding(history)], 1)
        return F.normalize(self.user_tower(h), dim=-1)

    def item_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """[I, W] item inputs (other columns unread) → [I, D] unit vectors."""
        return F.normalize(self.item_tower(self.embedding.embed(x, ("item",)).flatten(1)), dim=-1)

    def spec(self) -> dict[str, Any]:
        return {"name": "two_tower", "config": dataclasses.asdict(self.config)}


def sampled_softmax_loss(user: torch.Tensor, item: torch.Tensor, item_ids: torch.Tensor, log_q: torch.Tensor,
                         temperature: float) -> torch.Tensor:
    """In-batch softmax with the logQ correction (Yi et al. 2019, eq. 3).

    Args:
        user: [B, D] user vectors.
        item: [B, D] vectors of each row's positive item.
        item_ids: [B] item ids (rows sharing an item are not each other's negatives).
        log_q: [B] log sampling probability of each row's item.
        temperature: softmax temperature.

    Returns:
        Scalar mean cross-entropy of each user against its own positive.
    """
    logits = user @ item.T / temperature - log_q.unsqueeze(0)  # [B, B]
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))  # accidental hits are not negatives
    return F.cross_entropy(logits, torch.arange(len(user), device=user.device))


def build_two_tower(schema: Schema, **options: Any) -> TwoTower:
    """A `TwoTower` from keyword options (unknown keys raise `ConfigError`)."""
    return TwoTower(schema, make_config(TwoTowerConfig, options, model="two_tower"))  # type: ignore[arg-type]

