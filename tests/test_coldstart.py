"""Cold-start evaluation: metrics agree with recsys.metrics, the bootstrap is exact and paired, the
query set is fixed across K and methods, `none` is the ranker, the command writes every output and
bad inputs give one-line errors."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest
import torch

from recsys import metrics as M
from recsys.coldstart import stats as S
from recsys.coldstart.commands import add_commands
from recsys.evaluate import task_metrics
from recsys.meta.base import Adapter

torch.set_num_threads(1)

TASKS = ("click", "like", "rating")


# --------------------------------------------------------------------------- fake adapters


class UserOffset(Adapter):
    """Adds to each binary logit the centred log-odds of the user's support labels (K = 0: nothing)."""

    name = "offset"

    def adapt(self, support_x, support_y):
        base = self.base_scorer()
        shift = {}
        for j, task in enumerate(self.tasks):
            col = support_y[:, j]
            col = col[~torch.isnan(col)]
            if task in ("click", "like") and len(col):
                p = (col.sum() + 1) / (len(col) + 2)
                shift[task] = torch.log(p / (1 - p))

        def score(x):
            out = base(x)
            return {t: v + shift.get(t, 0.0) for t, v in out.items()}

        return score


class Recording(Adapter):
    """The ranker's scores; records every support size and query block it is given."""

    name = "recording"
    calls: list = []

    def adapt(self, support_x, support_y):
        base = self.base_scorer()

        def score(x):
            Recording.calls.append((len(support_x), support_y.shape[1], x.clone()))
            return base(x)

        return score


class Same(Adapter):
    name = "same"

    def adapt(self, support_x, support_y):
        return self.base_scorer()


@pytest.fixture
def fakes(monkeypatch):
    from recsys.meta.registry import ADAPTERS

    for cls in (UserOffset, Recording, Same):
        monkeypatch.setitem(ADAPTERS, cls.name, cls)
    Recording.calls = []


@pytest.fixture
def run_dir(tmp_path, prepared):
    from recsys.config import load_config
    from recsys.train import train

    out = tmp_path / "run"
    train(load_config("smoke", {"dataset": str(prepared), "device": "cpu", "esmm": True, "threads": 1}), out,
          log=lambda m: None)
    return out


def _main(argv: list[str]) -> int:
    """`recsys.cli.main` once `coldstart` is wired into it; until then the same error handling."""
    from recsys import cli

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "coldstart" in sub.choices:
        return cli.main(argv)
    from recsys.errors import RecsysError

    parser = argparse.ArgumentParser(prog="recsys")
    add_commands(parser.add_subparsers())
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RecsysError as exc:
        print(f"recsys: error: {exc}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------------- metrics


def _world(n_users=40, seed=0, rows=(5, 30)):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(*rows, size=n_users)
    users = np.repeat(np.arange(n_users), sizes)
    n = len(users)
    click = (rng.uniform(size=n) < 0.3).astype(float)
    like = np.where(click == 1, (rng.uniform(size=n) < 0.5).astype(float), 0.0)
    rating = np.where(click == 1, rng.integers(1, 6, size=n).astype(float), np.nan)
    y = np.stack([click, like, rating], axis=1)
    pred = {"click": np.round(rng.uniform(size=n), 2),  # rounded: ties exercised
            "like": np.round(rng.uniform(size=n), 2), "like_given_click": rng.uniform(size=n),
            "rating": rng.uniform(1, 5, size=n)}
    return y, pred, users


def test_metrics_agree_with_recsys_metrics_and_evaluate():
    y, pred, users = _world()
    got = S.point_metrics(S.user_stats(y, pred, users, 40, TASKS, esmm=True))
    ref = task_metrics(y, users, pred, TASKS)
    for task in ("click", "like"):
        assert got[f"{task}_auc"] == pytest.approx(ref[task]["auc"], abs=1e-12)
        assert got[f"{task}_user_auc"] == pytest.approx(ref[task]["user_auc"], abs=1e-12)
        assert got[f"{task}_user_auc_skipped"] == ref[task]["user_auc_skipped"]
        assert got[f"{task}_ndcg@10"] == pytest.approx(ref[task]["ndcg@10"], abs=1e-12)
    assert got["like_click_auc"] == pytest.approx(ref["like_among_clicks"]["auc"], abs=1e-12)
    assert got["like_click_user_auc"] == pytest.approx(ref["like_among_clicks"]["user_auc"], abs=1e-12)
    assert got["rating_rmse"] == pytest.approx(ref["rating"]["rmse"], abs=1e-12)
    assert got["rating_mae"] == pytest.approx(ref["rating"]["mae"], abs=1e-12)
    from sklearn.metrics import roc_auc_score

    assert got["click_auc"] == pytest.approx(roc_auc_score(y[:, 0], pred["click"]), abs=1e-12)


def test_taste_metrics_against_truth():
    y, pred, users = _world()
    truth = {"true_p_like": pred["like_given_click"].copy()}
    got = S.point_metrics(S.user_stats(y, pred, users, 40, TASKS, truth=truth, esmm=True))
    assert got["taste_spearman"] == pytest.approx(1.0) and got["taste_user_auc"] == pytest.approx(1.0)
    truth = {"true_p_like": -pred["like_given_click"]}
    got = S.point_metrics(S.user_stats(y, pred, users, 40, TASKS, truth=truth, esmm=True))
    assert got["taste_spearman"] == pytest.approx(-1.0) and got["taste_user_auc"] == pytest.approx(0.0)


def test_bootstrap_values_are_the_metrics_of_the_resampled_rows():
    y, pred, users = _world(n_users=12)
    stats = S.user_stats(y, pred, users, 12, TASKS, esmm=True)
    counts = S.bootstrap_counts(12, 5, seed=3)
    values = S.metric_values(stats, counts)
    for b in range(5):
        drawn = np.repeat(np.arange(12), counts[b].astype(int))
        rows = np.concatenate([np.flatnonzero(users == u) for u in drawn])
        copy = np.repeat(np.arange(len(drawn)), [int((users == u).sum()) for u in drawn])  # a copy is a user
        assert values["click_auc"][b] == pytest.approx(M.auc(y[rows, 0], pred["click"][rows]), abs=1e-12)
        per_user = M.grouped_auc(y[rows, 1], pred["like"][rows], copy)
        assert values["like_user_auc"][b] == pytest.approx(per_user.mean, abs=1e-12)
        clicked = rows[y[rows, 0] == 1]
        assert values["rating_rmse"][b] == pytest.approx(M.rmse(y[clicked, 2], pred["rating"][clicked]), abs=1e-12)


def test_paired_bootstrap_finds_a_known_improvement_and_zero_for_identical():
    y, pred, users = _world(n_users=200, seed=1)
    better = dict(pred)
    helped = np.isin(users, np.arange(0, 200, 2))          # every other user
    better["like"] = np.where(helped & (y[:, 1] == 1), pred["like"] + 0.3, pred["like"])
    a = S.user_stats(y, better, users, 200, TASKS, esmm=True)
    b = S.user_stats(y, pred, users, 200, TASKS, esmm=True)
    res = S.paired_bootstrap(a, b, n_boot=300, seed=0)
    assert res["like_auc"]["diff"] > 0 and res["like_auc"]["lo"] > 0 and res["like_auc"]["excludes_zero"]
    assert res["like_user_auc"]["lo"] > 0
    assert res["click_auc"]["diff"] == 0 and res["click_auc"]["lo"] == res["click_auc"]["hi"] == 0.0
    same = S.paired_bootstrap(b, b, n_boot=300, seed=0)
    for row in same.values():
        assert row["diff"] == 0 and row["lo"] == 0 and row["hi"] == 0 and not row["excludes_zero"]
    again = S.paired_bootstrap(a, b, n_boot=300, seed=0)
    assert again == res                                      # deterministic under a seed
    other = S.paired_bootstrap(a, b, n_boot=300, seed=1)
    assert other["like_auc"]["lo"] != res["like_auc"]["lo"]


# --------------------------------------------------------------------------- protocol


def test_fixed_query_set_and_none_is_the_ranker(run_dir, fakes):
    from recsys.coldstart.harness import score_methods, summarise
    from recsys.coldstart.protocol import cold_start_split, fixed_queries, load_run, ranker_outputs

    run = load_run(run_dir)
    split = cold_start_split(run.dataset, seed=0)
    queries = fixed_queries(split.test, (3, 0, 1))
    assert queries.shots == (0, 1, 3)
    sampler = split.test
    rel = sampler._rel_event.numpy()
    expected = np.concatenate([np.arange(int(sampler.start[p]), int(sampler.start[p] + sampler.rows[p]))
                               [rel[int(sampler.start[p]):int(sampler.start[p] + sampler.rows[p])] >= 3]
                               for p in queries.users])
    assert np.array_equal(queries.query_rows.numpy(), expected)
    assert queries.excluded == len(sampler) - len(queries.users)

    scores, _, _ = score_methods(run, split, ["none", "recording", "same"], queries, log=lambda m: None)
    own = [ranker_outputs(run.ranker, sampler.data.x[queries.query(i)]) for i in range(len(queries.users))]
    own = {t: np.concatenate([o[t] for o in own]) for t in run.tasks}      # scored per user, as adapters are
    for k in queries.shots:
        for t in run.tasks:
            assert np.array_equal(scores["none"][k].outputs[t], own[t])
    calls = Recording.calls
    n = len(queries.users)
    assert len(calls) == n * len(queries.shots)
    for i, p in enumerate(queries.users):
        blocks = [calls[j * n + i] for j in range(len(queries.shots))]
        assert all(torch.equal(b[2], blocks[0][2]) for b in blocks)           # same query rows at every K
        assert torch.equal(blocks[0][2], sampler.data.x[queries.query(i)])
        assert [b[0] for b in blocks] == [int(sampler.support_size(k)[p]) for k in queries.shots]
        assert all(b[1] == len(run.tasks) for b in blocks)

    report = summarise(run, queries, scores, {"none": 0.0, "recording": 0.0, "same": 0.0}, n_boot=50, seed=0)
    for pair in ("same - none", "recording - none"):
        for per_metric in report["paired"][pair].values():
            for row in per_metric.values():
                assert row["diff"] in (0.0, None) and row["lo"] in (0.0, None) and row["hi"] in (0.0, None)


def test_command_end_to_end(tmp_path, run_dir, fakes, capsys):
    out = tmp_path / "cs"
    argv = ["coldstart", "evaluate", "--run", str(run_dir), "--methods", "offset,same", "--shots", "0,1,3",
            "--bootstrap", "100", "--out", str(out)]
    assert _main(argv) == 0
    md = capsys.readouterr().out
    assert "## K = 3" in md and "### offset - none" in md and "Adaptation time" in md
    for name in ("coldstart.json", "coldstart.md", "curve.png", "curve.json"):
        assert (out / name).stat().st_size > 0
    report = json.loads((out / "coldstart.json").read_text())
    assert report["methods"] == ["none", "offset", "same"] and report["shots"] == [0, 1, 3]
    assert report["esmm"] is True and report["warm"]["users"] > 0
    assert report["users"]["measured"] + report["users"]["excluded_no_query"] == report["users"]["test"]
    assert report["best_meta"] in ("offset", "same")
    res = report["results"]
    assert res["offset"]["0"]["like_auc"] == res["none"]["0"]["like_auc"]     # K = 0: no adaptation
    assert all(res[m][k]["rows"] == report["query_rows"] for m in res for k in res[m])
    assert set(report["paired"]) == {"offset - none", "same - none", "oracle - none"}
    assert report["oracle"]["users"] == report["users"]["measured"] and report["gap_reference"] == "oracle"
    assert (out / "oracle" / "ranker" / "model.safetensors").exists() and "## Gap closed" in md
    curve = json.loads((out / "curve.json").read_text())
    assert {p["metric"] for p in curve["panels"]} >= {"like_auc", "click_auc", "like_user_auc", "rating_rmse"}
    assert len(curve["points"]) == len(curve["panels"]) * 3 * 3
    assert (out / "adapters" / "offset" / "adapter.json").exists()
    assert report["fit_reused"] == {"none": False, "offset": False, "same": False}
    assert _main([*argv, "--json", "--reuse-fitted"]) == 0                   # saved fits loaded, same figures
    again = json.loads(capsys.readouterr().out)
    assert again["fit_reused"] == {"none": True, "offset": True, "same": True}
    for m in res:
        for k in res[m]:
            assert {n: v for n, v in again["results"][m][k].items() if "_ms_" not in n} == \
                {n: v for n, v in res[m][k].items() if "_ms_" not in n}
    assert _main([*argv, "--json", "--reuse-fitted", "--seed", "1"]) == 0   # another seed: fitted again
    assert json.loads(capsys.readouterr().out)["fit_reused"]["offset"] is False


def test_oracle_is_the_ranker_trained_on_the_measured_users_support(tmp_path, run_dir):
    import polars as pl

    from recsys.coldstart.harness import summarise
    from recsys.coldstart.oracle import oracle_scores
    from recsys.coldstart.protocol import MethodScores, cold_start_split, fixed_queries, load_run, ranker_outputs

    run = load_run(run_dir)
    split = cold_start_split(run.dataset, seed=0)
    queries = fixed_queries(split.test, (0, 1, 3))
    lines: list[str] = []
    oracle, info = oracle_scores(run, queries, tmp_path / "oracle", log=lines.append)
    data, sampler = tmp_path / "oracle" / "data", queries.sampler
    users = sampler.users[queries.users].numpy()
    train, added = pl.read_parquet(run.dataset / "train.parquet"), pl.read_parquet(data / "train.parquet")
    old_size = json.loads((run.dataset / "schema.json").read_text())["fields"][0]["size"]
    new = added.slice(train.height)
    assert added.slice(0, train.height).equals(train)                    # the warm rows, untouched
    assert json.loads((data / "schema.json").read_text())["fields"][0]["size"] == old_size + len(users)
    assert info["users"] == len(users) and info["support_rows_added"] == new.height
    for i, u in enumerate(users):                                        # each user's first 3 events, own id
        mine = new.filter(pl.col("user_id") == int(u))
        assert mine["f_user_id"].unique().to_list() == [old_size + int(np.searchsorted(np.sort(users), u))]
        support = queries.support_rows(i, 3)
        assert mine.height == len(support)
        assert mine["item_id"].to_list() == sampler.data.item[support].tolist()
    assert set(oracle.outputs) == set(run.tasks)
    assert all(len(v) == len(queries.query_rows) and np.isfinite(v).all() for v in oracle.outputs.values())
    plain = ranker_outputs(run.ranker, sampler.data.x[queries.query_rows])
    assert not np.allclose(oracle.outputs["click"], plain["click"])     # its own user embeddings count
    mtime = (tmp_path / "oracle" / "ranker" / "model.safetensors").stat().st_mtime_ns
    again, _ = oracle_scores(run, queries, tmp_path / "oracle", log=lines.append)   # reused, not retrained
    assert (tmp_path / "oracle" / "ranker" / "model.safetensors").stat().st_mtime_ns == mtime
    assert all(np.array_equal(again.outputs[t], oracle.outputs[t]) for t in run.tasks)

    none = MethodScores(plain, np.zeros(len(queries.users)), np.zeros(len(queries.users)), 0)
    report = summarise(run, queries, {"none": {k: none for k in queries.shots}}, {"none": 0.0}, n_boot=50,
                       seed=0, oracle=(oracle, info))
    assert report["gap_reference"] == "oracle" and set(report["paired"]) == {"oracle - none"}
    diff = report["paired"]["oracle - none"]["3"]["like_auc"]["diff"]
    assert diff == pytest.approx(report["oracle"]["like_auc"] - report["results"]["none"]["3"]["like_auc"])
    for metric, per_method in report["gap_closed"].items():               # none closes no gap, exactly
        assert all(v == 0.0 for v in per_method["none"].values())
        assert report["gap_intervals"][metric]["none"]["3"] == [0.0, 0.0]


def test_bad_inputs_are_one_line_errors(tmp_path, prepared, run_dir, capsys):
    from recsys.data.prepare import PrepareConfig, prepare_movielens
    from recsys.data.sources.movielens import parse_directory

    base = ["coldstart", "evaluate", "--run", str(run_dir), "--bootstrap", "10", "--out", str(tmp_path / "o"),
            "--methods", "none"]
    other = tmp_path / "other"
    prepare_movielens(parse_directory(tmp_path / "ml-100k"), other, PrepareConfig(seed=1))
    (tmp_path / "empty").mkdir()
    cases = [
        ([*base, "--methods", "none,nosuch"], "'nosuch'"),
        ([*base, "--shots", "0,-1"], "-1"),
        ([*base, "--shots", "0,two"], "'two'"),
        ([*base, "--shots", "0,500"], "500"),
        (["coldstart", "evaluate", "--run", str(tmp_path / "empty")], "manifest.json"),
        (["coldstart", "evaluate", "--run", str(tmp_path / "missing")], "missing"),
        ([*base, "--dataset", str(other)], str(other)),
        ([*base, "--dataset", "nosuchdata"], "nosuchdata"),
    ]
    if not torch.cuda.is_available():
        cases.append(([*base, "--device", "cuda"], "--device cuda"))
    for argv, needle in cases:
        assert _main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("recsys: error:") and "\n" not in err and needle in err, (argv, err)
    assert not (tmp_path / "o").exists()                      # nothing written on a bad input
    assert _main([*base, "--dataset", str(prepared), "--shots", "0"]) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none; run on a GPU machine)")
def test_adapters_fit_and_adapt_on_a_gpu(tmp_path, run_dir):
    """The same code path as on the CPU, with the ranker and every adapter on cuda:0: figures agree
    with the CPU run to float tolerance (K = 0 exactly the ranker's)."""
    from recsys.coldstart.harness import run_coldstart

    options = dict(methods=["none", "proto", "anil", "blackbox"], shots=(0, 3), n_boot=0, log=lambda m: None)
    cpu = run_coldstart(run_dir, out=tmp_path / "cpu", device="cpu", **options)
    gpu = run_coldstart(run_dir, out=tmp_path / "gpu", device="cuda", **options)
    assert gpu["results"]["none"]["0"]["like_auc"] == pytest.approx(cpu["results"]["none"]["0"]["like_auc"], abs=1e-4)
    for m in ("proto", "anil", "blackbox"):
        assert gpu["results"][m]["3"]["like_auc"] == pytest.approx(cpu["results"][m]["3"]["like_auc"], abs=0.02)
