"""Malformed input: every case is a clear error naming the file (and column), and nothing is
left half-written."""

from __future__ import annotations

import os

import pytest

from recsys.cli import main
from recsys.data.sources.movielens import parse_directory
from recsys.errors import DataSourceError, DataValidationError
from tests.conftest import write_atomic, write_grouplens


def _edit(path, transform):
    path.write_bytes(transform(path.read_bytes()))


def _replace_line(n: int, new: bytes):
    def f(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[n] = new
        return b"\n".join(lines)
    return f


CASES = [
    # (id, file, transform, error type, words the message must contain)
    ("empty ratings", "u.data", lambda d: b"", DataValidationError, ["u.data", "no ratings"]),
    ("random bytes", "u.data", lambda d: os.urandom(64) + b"\x00\xff", DataValidationError, ["u.data"]),
    ("wrong field count", "u.data", _replace_line(3, b"1\t2\t3"), DataValidationError, ["u.data", "line 4", "3 fields"]),
    ("non-integer user id", "u.data", _replace_line(0, b"abc\t1\t3\t880000000"), DataValidationError, ["u.data", "'user_id'", "abc"]),
    ("fractional item id", "u.data", _replace_line(0, b"1\t1.5\t3\t880000000"), DataValidationError, ["u.data", "'item_id'", "1.5"]),
    ("rating out of range", "u.data", _replace_line(0, b"1\t1\t7\t880000000"), DataValidationError, ["u.data", "'rating'", "7"]),
    ("missing rating", "u.data", _replace_line(0, b"1\t1\t\t880000000"), DataValidationError, ["u.data", "'rating'", "missing"]),
    ("NaN rating", "u.data", _replace_line(0, b"1\t1\tnan\t880000000"), DataValidationError, ["u.data", "'rating'"]),
    ("negative timestamp", "u.data", _replace_line(0, b"1\t1\t3\t-5"), DataValidationError, ["u.data", "'timestamp'", "-5"]),
    ("duplicate rating", "u.data", lambda d: d + d.split(b"\n")[0] + b"\n", DataValidationError, ["u.data", "duplicated", "user_id"]),
    ("unknown user", "u.data", lambda d: d + b"999\t1\t3\t880000000\n", DataValidationError, ["u.data", "'user_id'", "999", "u.user"]),
    ("unknown item", "u.data", lambda d: d + b"1\t999\t3\t880000000\n", DataValidationError, ["u.data", "'item_id'", "999", "u.item"]),
    ("age out of range", "u.user", _replace_line(0, b"1|250|M|student|12345"), DataValidationError, ["u.user", "'age'", "250"]),
    ("duplicate user", "u.user", lambda d: d + d.split(b"\n")[0] + b"\n", DataValidationError, ["u.user", "duplicated"]),
    ("bad genre flag", "u.item", lambda d: d.replace(b"|1|", b"|x|", 1), DataValidationError, ["u.item", "x"]),
    ("bad release year", "u.item", _replace_line(4, b"5|Movie 5|01-Jan-19xx||http://x/5|" + b"|".join([b"0"] * 18 + [b"1"])), DataValidationError, ["u.item", "'year'"]),
    ("header only", "u.item", lambda d: b"", DataValidationError, ["u.item", "no items"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_grouplens_file(tmp_path, world, case):
    _, fname, transform, err, words = case
    root = tmp_path / "ml"
    write_grouplens(root, world)
    _edit(root / fname, transform)
    with pytest.raises(err) as info:
        parse_directory(root)
    message = str(info.value)
    for w in words:
        assert w in message, f"{w!r} not in {message!r}"


def test_missing_file_is_named(tmp_path, world):
    root = tmp_path / "ml"
    write_grouplens(root, world)
    (root / "u.item").unlink()
    with pytest.raises(DataSourceError, match="not u.item"):
        parse_directory(root)


def test_no_movielens_files(tmp_path):
    with pytest.raises(DataSourceError, match="no MovieLens files"):
        parse_directory(tmp_path)


def test_atomic_wrong_header(tmp_path, world):
    root = tmp_path / "atomic"
    write_atomic(root, world)
    (root / "ml-100k.inter").write_text("user:token\titem:token\n1\t2\n")
    with pytest.raises(DataValidationError, match=r"ml-100k.inter: missing column\(s\) \['user_id'"):
        parse_directory(root)


def test_atomic_not_utf8(tmp_path, world):
    root = tmp_path / "atomic"
    write_atomic(root, world)
    (root / "ml-100k.user").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataValidationError, match="ml-100k.user: not UTF-8"):
        parse_directory(root)


def test_cli_reports_one_line_exit_2_and_leaves_nothing(tmp_path, world, capsys):
    root = tmp_path / "ml"
    write_grouplens(root, world)
    _edit(root / "u.data", _replace_line(0, b"1\t1\t9\t880000000"))
    data = tmp_path / "data"
    code = main(["data", "prepare", "ml-100k", "--source", str(root), "--data-dir", str(data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("recsys: error: ") and "u.data" in err[-1] and "'rating'" in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not (data / "prepared").exists() or not any((data / "prepared").iterdir())
    assert not (data / "raw" / "ml-100k" / "manifest.json").exists()
