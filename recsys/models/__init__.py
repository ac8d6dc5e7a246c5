"""Multi-task rankers: one architecture per file, chosen by name.

    >>> from recsys.models import build_model                       # doctest: +SKIP
    >>> model = build_model("mmoe", schema, num_experts=8)          # doctest: +SKIP
    >>> scores = model(x)               # {task: [B]} logits / values  # doctest: +SKIP

Every model is a `Ranker`: ``forward(x [B, W], position [B] | None) -> {task: [B]}``, with
`shared_parameters()` for gradient balancing and diagnostics, and a position-bias tower on
the click logit when the data has slate positions.
"""

from recsys.models.base import BIAS_TASK, Ranker, RankerConfig
from recsys.models.bias_tower import BiasTower
from recsys.models.embeddings import FeatureEmbedding
from recsys.models.registry import MODELS, build_from_spec, build_model

__all__ = ["BIAS_TASK", "MODELS", "BiasTower", "FeatureEmbedding", "Ranker", "RankerConfig", "build_from_spec",
           "build_model"]
