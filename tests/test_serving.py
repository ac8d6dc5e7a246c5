"""The two-stage recommender on a tiny world: retrieve, rank, blend, drop seen, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.config import load_config
from recsys.errors import ConfigError, UnknownIdError
from recsys.serving import Recommender
from recsys.train import train
from recsys.train_retriever import RetrieverConfig, train_retriever


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    from tests.conftest import tiny_world, write_grouplens
    from recsys.data.prepare import PrepareConfig, prepare_movielens
    from recsys.data.sources.movielens import parse_directory

    root = tmp_path_factory.mktemp("job")
    write_grouplens(root / "raw", tiny_world(n_users=40, n_items=60))
    prepare_movielens(parse_directory(root / "raw"), root / "prepared", PrepareConfig())
    cfg = load_config("smoke", {"dataset": str(root / "prepared"), "esmm": True, "max_steps": 30, "device": "cpu"})
    train(cfg, root / "run" / "ranker", log=lambda m: None)
    train_retriever(root / "prepared", root / "run" / "retriever",
                    RetrieverConfig(epochs=2, batch_size=64, model_options={"dim": 8, "out_dim": 16, "hidden": [16]}),
                    log=lambda m: None)
    return Recommender(root / "run", n_candidates=20)


def test_known_user_gets_k_unseen_items_sorted_by_blend(job):
    user = next(iter(job.user_x))
    res = job.recommend(user_id=user, k=5)
    assert len(res.items) == 5 and res.fallback is None
    blended = [r.blended for r in res.items]
    assert blended == sorted(blended, reverse=True)
    seen = set(job.history[user])
    assert not seen & {r.item_id for r in res.items}
    assert not seen & {i for i, _ in res.candidates}
    for r in res.items:
        assert r.blended == pytest.approx(0.5 * r.scores["click"] + 0.5 * r.scores["like"], rel=1e-6)
        assert set(r.scores) == {"click", "like", "rating"}


def test_blend_weights_change_the_order_and_are_checked(job):
    user = next(iter(job.user_x))
    click_only = job.recommend(user_id=user, k=20, weights={"click": 1.0})
    assert [r.blended for r in click_only.items] == pytest.approx([r.scores["click"] for r in click_only.items])
    rating = job.recommend(user_id=user, k=20, weights={"rating": 1.0})
    assert all(0 <= r.blended <= 1 for r in rating.items)
    with pytest.raises(ConfigError, match="watch"):
        job.recommend(user_id=user, weights={"watch": 1.0})
    with pytest.raises(ConfigError, match=">= 0"):
        job.recommend(user_id=user, weights={"click": -1.0})


def test_unknown_user_is_an_error_or_a_flagged_fallback(job):
    with pytest.raises(UnknownIdError, match="unknown user 99999"):
        job.recommend(user_id=99999)
    res = job.recommend(user_id=99999, k=3, fallback=True)
    assert res.fallback and "popular" in res.fallback and len(res.items) == 3
    with pytest.raises(UnknownIdError, match="unknown item 4242"):
        job.recommend(user_id=next(iter(job.user_x)), query_item=4242)


def test_new_user_from_support(job):
    from recsys.meta.registry import build_adapter

    support = [(3, 5.0), (7, 4.0), (9, 1.0)]
    plain = job.recommend(support=support, k=5)
    assert len(plain.items) == 5 and not {3, 7, 9} & {r.item_id for r in plain.items}
    adapted = job.recommend(support=support, k=5, adapter=build_adapter("none", job.ranker, esmm=job.esmm))
    assert [r.item_id for r in adapted.items] == [r.item_id for r in plain.items]  # `none` = the global ranker
    sx, sy = job.support_tensors(support)
    assert sx.shape == (15, job.schema.width) and sy[:, 0].tolist() == [1, 0, 0, 0, 0] * 3
    with pytest.raises(ConfigError, match="rating of item 3"):
        job.recommend(support=[(3, 9.0)])
    with pytest.raises(ConfigError, match="exactly one"):
        job.recommend(user_id=1, support=support)


def test_ranking_embeds_the_request_once_and_matches_the_plain_forward(job):
    import torch

    user = next(iter(job.user_x))
    res = job.recommend(user_id=user, k=20, weights={"click": 1.0})
    row = job._user_row(user, job.history[user][-1])
    cand = np.array([r.item_id for r in res.items])
    x = job.item_x[torch.from_numpy(np.searchsorted(job.item_ids, cand))].clone()
    for f in job.schema.fields:
        if f.side in ("user", "query"):
            x[:, job.schema.slice(f.name)] = row[job.schema.slice(f.name)]
    with torch.no_grad():
        direct = torch.sigmoid(job.ranker(x)["click"]).numpy()
    assert np.allclose(direct, [r.scores["click"] for r in res.items], atol=1e-6)


def test_device_placement(job, tmp_path):
    """The device path on the CPU: an explicit device="cpu" recommender gives the same list as
    the default one; cuda without a GPU is a clear error; with a GPU the same scores to 1e-4."""
    import torch

    user = next(iter(job.user_x))
    same = Recommender(job.run_dir, n_candidates=20, device="cpu")
    assert [r.item_id for r in same.recommend(user_id=user, k=5).items] == \
        [r.item_id for r in job.recommend(user_id=user, k=5).items]
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda"):
            Recommender(job.run_dir, n_candidates=20, device="cuda")
    else:
        gpu = Recommender(job.run_dir, n_candidates=20, device="cuda")
        a, b = gpu.recommend(user_id=user, k=5), job.recommend(user_id=user, k=5)
        assert np.allclose([r.blended for r in a.items], [r.blended for r in b.items], atol=1e-4)
