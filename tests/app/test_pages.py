"""Every page of the Streamlit app, in Streamlit's AppTest, on a tiny main-job directory.

Each page renders without an exception, and each bad input (unknown or malformed user id, an
empty, oversized, non-CSV or header-only upload, unknown items, zero ratings, a missing run
directory, missing optional artifacts) gives a clear message on the page. AppTest's default
3 s timeout is too short for loading the models, and Streamlit's caches live in the process, so
every test clears them.
"""

from __future__ import annotations

import os

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP

pytestmark = pytest.mark.app
TIMEOUT = 60
PAGES = ("pages/recommend.py", "pages/new_user.py", "pages/how_it_learned.py", "pages/evaluation.py")


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def open_app(run, monkeypatch, page: str | None = None) -> AppTest:
    monkeypatch.setenv("RECSYS_RUN", str(run))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    if page and page != PAGES[0]:
        at.switch_page(page).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything the page says in alerts, code blocks, markdown and captions, as one string."""
    parts = []
    for kind in ("error", "warning", "info", "success", "code", "markdown", "caption"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# ------------------------------------------------------------------ every page


def test_every_page_renders_with_every_artifact(tiny_run, monkeypatch):
    at = open_app(tiny_run, monkeypatch)
    no_errors(at)
    assert at.title[0].value == "Recommend"
    top = at.dataframe[0].value
    assert len(top) == 10 and {"title", "blended", "click", "like", "rating"} <= set(top.columns)
    cand = at.dataframe[1].value
    assert int(cand["in top-k"].sum()) == 10

    at.switch_page("pages/new_user.py").run()
    no_errors(at)
    assert "Zero ratings so far" in texts(at)

    at.switch_page("pages/how_it_learned.py").run()
    no_errors(at)
    assert len(at.get("vega_lite_chart")) >= 8  # losses, weights, cosine, gates, validation, Pareto, grid, affinity
    assert "No " not in " ".join(str(e.value) for e in at.info)  # every optional artifact is there

    at.switch_page("pages/evaluation.py").run()
    no_errors(at)
    assert not at.info, [e.value for e in at.info]
    assert "like AUC" in at.selectbox(key="cs_metric").options
    assert len(at.get("vega_lite_chart")) == 2  # ranker against baselines, the cold-start curve


def test_sliders_reblend_the_cached_candidates(tiny_run, monkeypatch):
    at = open_app(tiny_run, monkeypatch)
    at.slider(key="w_click").set_value(1.0)
    at.slider(key="w_like").set_value(0.0)
    at.run()
    no_errors(at)
    top = at.dataframe[0].value
    assert top["blended"].tolist() == pytest.approx(top["click"].tolist())
    assert top["click"].is_monotonic_decreasing
    at.slider(key="w_click").set_value(0.0).run()
    assert "All task weights are 0" in texts(at)
    assert not at.exception


def test_query_video_and_k(tiny_run, monkeypatch):
    at = open_app(tiny_run, monkeypatch)
    user = at.selectbox(key="user").value
    query = at.selectbox(key=f"query_{user}")
    query.set_value(3 if query.value != 3 else 4)
    at.slider(key="k").set_value(5).run()
    no_errors(at)
    assert len(at.dataframe[0].value) == 5


# ------------------------------------------------------------------ bad input: users


def test_unknown_user_id_typed_in_gets_a_message_and_a_flagged_fallback(tiny_run, monkeypatch):
    at = open_app(tiny_run, monkeypatch)
    at.text_input(key="typed_user").input("99999").run()
    assert not at.exception
    assert any("Unknown user 99999" in e.value and "New user" in e.value for e in at.error)
    assert "most popular" in texts(at)
    at.text_input(key="typed_user").input("abc").run()
    assert not at.exception
    assert any("is not a user id" in e.value for e in at.error)


# ------------------------------------------------------------------ new user


def test_new_user_before_after_with_picks_and_methods(tiny_run, monkeypatch):
    at = open_app(tiny_run, monkeypatch, "pages/new_user.py")
    assert "Zero ratings so far" in texts(at)
    items = at.multiselect(key="picks").options
    assert items
    at.button(key="example").click().run()
    no_errors(at)
    after = at.dataframe[1].value
    assert "change" in after.columns and len(after) == 10
    assert any(m.label == "adaptation time (none)" for m in at.metric)

    at.selectbox(key="method").set_value("finetune").run()   # saved in RUN/adapters/finetune
    no_errors(at)
    assert "fitted adapter from" in texts(at)
    assert any(m.label == "adaptation time (finetune)" and m.value.endswith("ms") for m in at.metric)

    at.selectbox(key="method").set_value("maml").run()       # not fitted in the tiny run
    assert not at.exception
    assert any("`maml` is not available" in w.value and "instead" in w.value for w in at.warning)


@pytest.mark.parametrize("name, data, message", [
    ("empty.csv", b"", "is empty"),
    ("big.csv", b"item_id,rating\n" + b"1,5\n" * 300_000, "is too large"),
    ("photo.csv", bytes(range(256)) * 8, "not a CSV text file"),
    ("notes.csv", b"hello, world\nthis is not it\n", "first line should be the header `item_id,rating`"),
    ("header.csv", b"item_id,rating\n", "no ratings (zero rows)"),
    ("many.csv", b"item_id,rating\n" + b"1,5\n" * 201, "the limit is 200"),
    ("unknown.csv", b"item_id,rating\n3,5\n99999,4\n", "not in the catalogue (99999)"),
    ("stars.csv", b"item_id,rating\n3,9\n", "must be a number from 1 to 5"),
])
def test_bad_uploads_say_what_is_wrong(name, data, message):
    import sys

    sys.path.insert(0, str(APP.parent))
    from _lib.logic import RatingsFileError, parse_ratings_csv

    with pytest.raises(RatingsFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_ratings_csv(data, known_items=set(range(1, 61)), name=name)


def test_uploads_on_the_page(tiny_run, monkeypatch):
    at = open_app(tiny_run, monkeypatch, "pages/new_user.py")
    bad = [("empty.csv", b"", "is empty"),
           ("big.csv", b"item_id,rating\n" + b"1,5\n" * 300_000, "is too large"),
           ("photo.png", bytes(range(256)) * 8, "not a CSV text file"),
           ("header.csv", b"item_id,rating\n", "no ratings (zero rows)")]
    for name, data, message in bad:
        at.file_uploader(key="upload").set_value((name, data, "text/csv")).run()
        assert not at.exception, name
        assert any(message in e.value for e in at.error), (name, [e.value for e in at.error])
        assert "Zero ratings so far" in texts(at)  # and the page still works
    at.file_uploader(key="upload").set_value(("mine.csv", b"item_id,rating\n3,5\n7,4\n9,1\n3,2\n", "text/csv")).run()
    no_errors(at)
    assert any("Using the 3 ratings" in e.value for e in at.success)
    assert "rated more than once" in texts(at)
    assert any(m.label == "ratings used" and m.value == "3" for m in at.metric)


# ------------------------------------------------------------------ missing artifacts


def test_missing_run_directory_names_the_one_command(tmp_path, monkeypatch):
    gone = tmp_path / "nothing-here"
    for page in PAGES:
        at = open_app(gone, monkeypatch, page)
        assert any("No trained models" in w.value for w in at.warning), page
        assert any(c.value == f"bash run.sh --out {gone}" for c in at.code), page


def test_default_run_directory_command_is_bash_run_sh(tmp_path, monkeypatch):
    monkeypatch.delenv("RECSYS_RUN", raising=False)
    monkeypatch.chdir(tmp_path)  # no runs/main here
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any(c.value == "bash run.sh" for c in at.code)


def test_missing_optional_artifacts_name_their_commands(tiny_run, tmp_path, monkeypatch):
    bare = tmp_path / "bare"
    bare.mkdir()
    for part in ("ranker", "retriever"):
        os.symlink(tiny_run / part, bare / part)
    at = open_app(bare, monkeypatch, "pages/how_it_learned.py")
    no_errors(at)
    code = [c.value for c in at.code]
    assert f"recsys experiment grid --dataset ml-100k --out {bare / 'experiments' / 'grid'}" in code
    assert f"recsys experiment affinity --dataset ml-100k --out {bare / 'experiments' / 'affinity'}" in code
    at.switch_page("pages/evaluation.py").run()
    no_errors(at)
    code = [c.value for c in at.code]
    assert f"recsys coldstart evaluate --run {bare / 'ranker'} --out {bare / 'eval' / 'coldstart'}" in code
    assert f"bash run.sh --out {bare}" in code  # eval/ranker.json, end_to_end.json, index.json
    at.switch_page("pages/recommend.py").run()
    no_errors(at)  # no index.json: the flat index
    assert len(at.dataframe[0].value) == 10


# ------------------------------------------------------------------ the pure helpers


def test_reblend_matches_serving_and_compare_labels_moves(tiny_run):
    import sys

    sys.path.insert(0, str(APP.parent))
    from _lib.logic import compare, reblend

    from recsys.serving import Recommender

    rec = Recommender(tiny_run, n_candidates=20)
    user = next(iter(rec.user_x))
    full = rec.recommend(user_id=user, k=20)
    weights = {"click": 0.2, "like": 0.3, "rating": 0.5}
    direct = rec.recommend(user_id=user, k=20, weights=weights)
    frame = reblend(full.items, weights)
    assert frame["item_id"].tolist() == [r.item_id for r in direct.items]
    assert frame["blended"].tolist() == pytest.approx([r.blended for r in direct.items])
    with pytest.raises(ValueError, match="above 0"):
        reblend(full.items, {"click": 0.0})
    assert compare([1, 2, 3], [3, 1, 4]) == (["▲ 2", "▼ 1", "new"], [2])


def test_a_run_whose_data_set_is_gone_says_how_to_remake_it(tiny_run, tmp_path, monkeypatch):
    import json
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(tiny_run / "ranker", moved / "ranker")
    os.symlink(tiny_run / "retriever", moved / "retriever")
    manifest = json.loads((moved / "ranker" / "manifest.json").read_text())
    manifest["dataset"] = str(tmp_path / "gone")
    (moved / "ranker" / "manifest.json").write_text(json.dumps(manifest))
    for page in PAGES:
        at = open_app(moved, monkeypatch, page)
        assert any("not there any more" in w.value for w in at.warning), page
        assert any(c.value == f"bash run.sh --out {moved}" for c in at.code), page


def test_corrupt_artifacts_get_a_message_and_the_rest_of_the_page_still_works(tiny_run, tmp_path, monkeypatch):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_run / "ranker", broken / "ranker")
    os.symlink(tiny_run / "retriever", broken / "retriever")
    (broken / "ranker" / "metrics.jsonl").write_text('{"kind": "step", "step": 0\nnot json\n')
    (broken / "eval" / "coldstart").mkdir(parents=True)
    (broken / "eval" / "ranker.json").write_bytes(b"\x89PNG garbage")
    (broken / "eval" / "coldstart" / "curve.json").write_text('{"panels": 3, "points": "x"}')
    at = open_app(broken, monkeypatch, "pages/how_it_learned.py")
    assert any("is not a training log" in e.value for e in at.error)
    assert any("recsys experiment grid" in c.value for c in at.code)  # the next sections still render
    at.switch_page("pages/evaluation.py").run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("ranker.json is not valid JSON" in e for e in errors), errors
    assert any("the cold-start curve could not be shown (TypeError)" in e for e in errors), errors
    assert any(c.value == f"bash run.sh --out {broken}" for c in at.code)  # end_to_end.json, index.json
    assert not any("Traceback" in e for e in errors)
