"""A tiny trained ranker and its episodes, built once per session (about a second), and small
adapter options so every adapter fits in well under a second."""

from __future__ import annotations

import pytest
import torch

from recsys.data.episodes import EpisodeSampler
from recsys.data.splits import split_cold_users
from recsys.data.tensors import load_schema, load_split
from recsys.models.registry import build_model
from recsys.mtl.losses import task_losses

torch.set_num_threads(1)

#: Options that keep every adapter tiny (the world's users have 4 to 15 events).
SMALL_META = {"steps": 2, "lr_grid": (0.01, 0.1), "meta_batch": 4, "steps_per_epoch": 3, "max_epochs": 2,
              "shots": (1, 2), "max_query": 10, "valid_k": 1, "query_after": 2, "checkpoint_every": 2}
OPTIONS = {
    "none": {},
    "finetune": {"scopes": ("bias", "user+last"), "optimizers": ("sgd", "adam"), "lrs": (0.01, 0.1),
                 "steps": (1, 2), "reductions": ("mean", "sum"), "valid_k": 1, "query_after": 2},
    "maml": SMALL_META,
    "fomaml": SMALL_META,
    "anil": SMALL_META,
    "metasgd": SMALL_META,
    "proto": {"lambdas": (1.0, 4.0), "weights": (0.0, 0.5), "valid_k": 1, "query_after": 2},
    "blackbox": {"hidden": 8, "meta_batch": 4, "steps_per_epoch": 3, "max_epochs": 2, "shots": (1, 2),
                 "max_query": 10, "valid_k": 1, "query_after": 2, "checkpoint_every": 2},
}
OPTIONS["blackbox_maml"] = {**OPTIONS["blackbox"], "inner_steps": 1, "inner_lr_grid": (0.01, 0.1)}
ADAPTER_NAMES = tuple(OPTIONS)


class World:
    """The tiny data set's ranker (ESMM MMoE) and episode samplers."""

    def __init__(self, prepared) -> None:
        self.schema = load_schema(prepared)
        train = load_split(prepared, "train")
        cold = load_split(prepared, "coldstart")
        valid_ids, test_ids = split_cold_users(cold.user.unique().numpy(), seed=0)
        in_valid = torch.isin(cold.user, torch.as_tensor(valid_ids))
        self.train = EpisodeSampler(train)
        self.valid = EpisodeSampler(cold.subset(in_valid))
        self.test = EpisodeSampler(cold.subset(~in_valid))
        torch.manual_seed(0)
        self.ranker = build_model("mmoe", self.schema, dim=4, num_experts=2, expert_hidden=(8,), tower_hidden=(4,))
        opt = torch.optim.Adam(self.ranker.parameters(), lr=0.01)
        for step in range(30):
            idx = torch.randint(len(train), (64,), generator=torch.Generator().manual_seed(step))
            losses = task_losses(self.ranker(train.x[idx]), train.y[idx], self.ranker.tasks, esmm=True)
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
        self.ranker.eval()
        self.esmm = True
        self.ranker_state = {k: v.clone() for k, v in self.ranker.state_dict().items()}

    def support(self, k: int = 2, user: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(support_x [S, W], support_y [S, T], query_x [Q, W]) of one test user."""
        b = self.test.batch(k, torch.tensor([user]))
        return b.support_x[0][b.support_mask[0]], b.support_y[0][b.support_mask[0]], b.query_x[0][b.query_mask[0]]


@pytest.fixture(scope="session")
def meta_world(tmp_path_factory) -> World:
    from recsys.data.prepare import PrepareConfig, prepare_movielens
    from recsys.data.sources.movielens import parse_directory
    from tests.conftest import tiny_world, write_grouplens

    root = tmp_path_factory.mktemp("meta")
    write_grouplens(root / "ml-100k", tiny_world(n_users=40))
    prepare_movielens(parse_directory(root / "ml-100k"), root / "prepared", PrepareConfig())
    return World(root / "prepared")


@pytest.fixture(scope="session")
def fitted(meta_world):
    """Every adapter, fitted once on the tiny world (shared by the read-only tests)."""
    from recsys.meta.registry import build_adapter

    out = {}
    for name, options in OPTIONS.items():
        adapter = build_adapter(name, meta_world.ranker, esmm=meta_world.esmm, **options)
        out[name] = adapter.fit(meta_world.train, meta_world.valid, log=lambda m: None)
    return out
