"""MovieLens sources: the three on-disk layouts, the cache, checksums and fallbacks."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import polars as pl
import pytest

from recsys.data.sources import movielens as M
from recsys.errors import DataSourceError
from tests.conftest import write_atomic, write_ml1m


def test_grouplens_layout_parses_latin1_and_genres(tiny_ml, world):
    assert tiny_ml.ratings.height == len(world["ratings"])
    assert tiny_ml.ratings.schema == {"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float32, "timestamp": pl.Int64}
    first = tiny_ml.items.row(0, named=True)
    assert first["title"] == "Café Society (1995)"  # Latin-1 decoded
    assert tiny_ml.items.filter(pl.col("item_id") == 2)["year"][0] is None
    assert all(1 <= len(g) <= 3 for g in tiny_ml.items["genres"].to_list())
    assert tiny_ml.users.filter(pl.col("user_id") == 7)["zip"][0] == "T8H1N"


def test_atomic_and_grouplens_layouts_agree(tmp_path, tiny_ml, world):
    write_atomic(tmp_path / "atomic", world)
    atomic = M.parse_directory(tmp_path / "atomic")
    assert atomic.ratings.equals(tiny_ml.ratings)
    assert atomic.users.equals(tiny_ml.users)
    assert atomic.items.select("item_id", "year", "genres").equals(tiny_ml.items.select("item_id", "year", "genres"))
    assert atomic.items.filter(pl.col("item_id") == 3)["title"][0] == "Movie 3"


def test_ml1m_layout(tmp_path, world):
    write_ml1m(tmp_path / "ml-1m", world)
    ml = M.parse_directory(tmp_path / "ml-1m")
    assert ml.name == "ml-1m"
    assert ml.ratings.height == len(world["ratings"])
    assert set(ml.users["occupation"].to_list()) <= set(M.ML1M_OCCUPATIONS)
    assert ml.items.filter(pl.col("item_id") == 5)["year"][0] == 1955
    assert ml.items.filter(pl.col("item_id") == 5)["title"][0] == "Movie 5"


def _no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the network was used")

    monkeypatch.setattr(M.urllib.request, "urlopen", refuse)
    monkeypatch.setattr(M.subprocess, "run", refuse)


def test_fetch_from_directory_caches_and_second_run_is_offline(tmp_path, grouplens_dir, monkeypatch):
    data = tmp_path / "data"
    ml = M.fetch("ml-100k", data, source=str(grouplens_dir), log=lambda m: None)
    manifest = json.loads((data / "raw" / "ml-100k" / "manifest.json").read_text())
    assert manifest["source"] == "directory" and set(manifest["sha256"]) == {"ratings", "users", "items"}
    _no_network(monkeypatch)
    again = M.fetch("ml-100k", data, log=lambda m: None)
    assert again.ratings.equals(ml.ratings) and again.items.equals(ml.items)


def test_corrupted_cache_is_not_trusted(tmp_path, grouplens_dir, monkeypatch):
    data = tmp_path / "data"
    M.fetch("ml-100k", data, source=str(grouplens_dir), log=lambda m: None)
    (data / "raw" / "ml-100k" / "ratings.parquet").write_bytes(b"tampered")
    assert M.load_cached(data, "ml-100k") is None


def test_grouplens_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t1\n")

    class Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(M.urllib.request, "urlopen", lambda *a, **k: Resp(buf.getvalue()))
    with pytest.raises(DataSourceError, match="MD5 .* does not match"):
        M.fetch("ml-100k", tmp_path / "data", source="grouplens", log=lambda m: None)
    assert not (tmp_path / "data" / "raw" / "ml-100k" / "manifest.json").exists()


def test_recbole_wheel_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    def fake_pip(cmd, **kw):
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{dest}/{M.RECBOLE_WHEEL}", "w") as zf:
            zf.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", "x")

        class P:
            returncode, stdout, stderr = 0, "", ""
        return P()

    monkeypatch.setattr(M.subprocess, "run", fake_pip)
    with pytest.raises(DataSourceError, match="SHA-256"):
        M.fetch("ml-100k", tmp_path / "data", source="recbole", log=lambda m: None)


def test_auto_falls_back_to_recbole_and_reports_both_failures(tmp_path, monkeypatch):
    def down(*a, **k):
        raise M.urllib.error.URLError("Name or service not known")

    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for recbole==1.2.1"

    monkeypatch.setattr(M.urllib.request, "urlopen", down)
    monkeypatch.setattr(M.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(DataSourceError, match="grouplens.*recbole|could not reach.*pip could not"):
        M.fetch("ml-100k", tmp_path / "data", log=lambda m: None)


def test_directory_of_other_release_is_refused(tmp_path, world):
    write_ml1m(tmp_path / "x", world)
    with pytest.raises(DataSourceError, match="holds ml-1m, not ml-100k"):
        M.fetch("ml-100k", tmp_path / "data", source=str(tmp_path / "x"), log=lambda m: None)


@pytest.mark.slow
def test_real_ml100k_from_recbole_wheel(tmp_path):
    """The real download (PyPI): checksums verified, the known shape of MovieLens-100k."""
    ml = M.fetch("ml-100k", tmp_path / "data", source="recbole", log=lambda m: None)
    assert (ml.ratings.height, ml.users.height, ml.items.height) == (100_000, 943, 1682)
    digest = hashlib.sha256((tmp_path / "data/raw/ml-100k/ratings.parquet").read_bytes()).hexdigest()
    assert json.loads((tmp_path / "data/raw/ml-100k/manifest.json").read_text())["sha256"]["ratings"] == digest
