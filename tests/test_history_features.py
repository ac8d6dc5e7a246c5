"""scripts/history_features.py: the user-state fields read only earlier events, and the copy is
written whole or not at all."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from history_features import main, write_copy  # noqa: E402

from recsys.data.tensors import load_split  # noqa: E402
from recsys.errors import DataValidationError  # noqa: E402


def _brute_force(rows: list[dict], length: int) -> list[dict]:
    """Each row's four fields from a plain loop over its user's earlier events."""
    out = []
    for r in rows:
        earlier = sorted((o for o in rows if o["user_id"] == r["user_id"] and o["event"] < r["event"]),
                         key=lambda o: o["event"])
        clicks = [o for o in earlier if o["click"] == 1]
        likes = [o["f_item_id"] for o in clicks if o["like"] == 1]
        last = clicks[-10:]
        pad = lambda ids: [0] * (length - len(ids[-length:])) + ids[-length:]  # noqa: E731
        rate = 2 + round(10 * sum(o["like"] == 1 for o in last) / len(last)) if last else 0
        out.append({"f_user_recent_clicks": pad([o["f_item_id"] for o in clicks]),
                    "f_user_recent_likes": pad(likes),
                    "f_user_recent_like_rate": rate,
                    "f_user_activity": 2 + min(int(math.floor(math.log2(len(clicks) + 1))), 9)})
    return out


def test_fields_read_only_earlier_events_of_the_same_user(prepared, tmp_path):
    out = tmp_path / "copy"
    schema = write_copy(prepared, out, length=5)
    frames = [pl.read_parquet(out / f"{s}.parquet").with_columns(pl.lit(s).alias("split"))
              for s in ("train", "valid", "test")]
    rows = pl.concat(frames, how="vertical").to_dicts()
    expected = _brute_force(rows, 5)
    for name in ("f_user_recent_clicks", "f_user_recent_likes", "f_user_recent_like_rate", "f_user_activity"):
        assert [r[name] for r in rows] == [e[name] for e in expected], name
    # the test split's history reaches back into that user's training events
    test = [r for r in rows if r["split"] == "test"]
    assert any(r["f_user_recent_clicks"][-1] != 0 for r in test)
    # the model-facing tensors carry the fields, inside their vocabularies
    data = load_split(out, "test")
    assert data.x.shape[1] == schema.width == load_split(prepared, "test").x.shape[1] + 5 + 5 + 1 + 1
    assert np.array_equal(data.x[:, schema.slice("f_user_recent_clicks")].numpy(),
                          np.array([r["f_user_recent_clicks"] for r in test]))


def test_copy_has_no_coldstart_split_and_names_its_source(prepared, tmp_path):
    out = tmp_path / "copy"
    write_copy(prepared, out, length=3)
    assert (prepared / "coldstart.parquet").exists() and not (out / "coldstart.parquet").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["derived"]["history_length"] == 3
    assert set(summary["files"]) == {p.name for p in out.iterdir()} - {"summary.json"}


def test_bad_input_names_the_problem_and_leaves_nothing(prepared, tmp_path, capsys):
    out = tmp_path / "copy"
    write_copy(prepared, out)
    with pytest.raises(DataValidationError, match="already has the fields"):
        write_copy(out, tmp_path / "twice")
    train = pl.read_parquet(prepared / "train.parquet").drop("like")
    train.write_parquet(prepared / "train.parquet")
    assert main(["--src", str(prepared), "--out", str(tmp_path / "bad")]) == 2
    assert "lacks columns ['like']" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["copy", "prepared", "ml-100k"])
    assert main(["--src", str(prepared), "--out", str(tmp_path / "bad"), "--length", "0"]) == 2
