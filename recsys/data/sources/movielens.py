"""MovieLens: fetch, verify, parse and validate into three canonical frames.

Sources, in the order `fetch(..., source="auto")` tries them:
  1. the GroupLens archive (``files.grouplens.org``), verified by its published MD5;
  2. the copy inside the PyPI wheel of ``recbole==1.2.1`` (``recbole/dataset_example/ml-100k/
     ml-100k.{inter,user,item}``), downloaded with ``pip download --no-deps`` and read straight
     out of the wheel (recbole is never installed), verified by SHA-256 of the wheel and of each file;
  3. a directory the user already has (``source=PATH``): GroupLens layout (``u.data``, ``u.user``,
     ``u.item``, Latin-1), the atomic layout above, or MovieLens-1M's (``ratings.dat``,
     ``users.dat``, ``movies.dat``).

Whatever the source, the result is cached under ``DATA_DIR/raw/NAME/`` as three parquet files
with a manifest of their SHA-256; a later run that finds them intact does not touch the network.

Canonical frames:
    ratings: user_id i64, item_id i64, rating f32 (1..5), timestamp i64 (unix seconds)
    users:   user_id i64, age i64, gender str, occupation str, zip str
    items:   item_id i64, title str, year i64 (nullable), genres list[str]

Reference: F. M. Harper and J. A. Konstan, "The MovieLens Datasets", ACM TiiS 2015.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recsys.data import validate as V
from recsys.errors import DataSourceError, DataValidationError
from recsys.io import atomic_write_json, atomic_write_with

GROUPLENS = "https://files.grouplens.org/datasets/movielens"

#: Published checksums of the official archives (GroupLens publishes MD5 beside each zip).
ARCHIVES: dict[str, dict[str, str]] = {
    "ml-100k": {"url": f"{GROUPLENS}/ml-100k.zip", "md5": "0e33842e24a9c977be4e0107933c0723"},
    "ml-1m": {"url": f"{GROUPLENS}/ml-1m.zip", "md5": "c4d9eecfca2ab87c1945afe126590906"},
}

RECBOLE_VERSION = "1.2.1"
RECBOLE_WHEEL = f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_FILES_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
FRAMES = ("ratings", "users", "items")


@dataclass
class MovieLens:
    """The three canonical, validated frames of one MovieLens release."""

    ratings: pl.DataFrame
    users: pl.DataFrame
    items: pl.DataFrame
    name: str = "ml-100k"


# --------------------------------------------------------------------------- parsing


def _read_delimited(path: Path, sep: str, names: list[str], encoding: str) -> pl.DataFrame:
    """Read a header-less delimited file with every column as text (types are checked after)."""
    try:
        text = path.read_bytes().decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{path}: not {encoding} text ({exc.reason} at byte {exc.start})") from exc
    if sep == "::":  # polars takes a one-byte separator; MovieLens-1M uses '::'
        text = text.replace("::", "\x1f")
        sep = "\x1f"
    rows = [line for line in text.splitlines() if line.strip()]
    if not rows:
        return pl.DataFrame({n: pl.Series([], dtype=pl.Utf8) for n in names})
    width = {len(r.split(sep)) for r in rows}
    if width != {len(names)}:
        bad = next(i for i, r in enumerate(rows) if len(r.split(sep)) != len(names))
        raise DataValidationError(
            f"{path}: line {bad + 1} has {len(rows[bad].split(sep))} fields, expected {len(names)} "
            f"({', '.join(names)})"
        )
    return pl.read_csv(
        io.StringIO("\n".join(rows)), separator=sep, has_header=False, new_columns=names,
        schema_overrides={n: pl.Utf8 for n in names}, quote_char=None,
    )


def _read_atomic(path: Path) -> pl.DataFrame:
    """Read a RecBole atomic file (tab-separated, header ``name:type``) as text columns."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    lines = text.splitlines()
    if not lines:
        raise DataValidationError(f"{path}: empty file, expected a header line of name:type fields")
    names = [h.split(":", 1)[0] for h in lines[0].split("\t")]
    body = [line for line in lines[1:] if line.strip()]
    for i, line in enumerate(body):
        if line.count("\t") != len(names) - 1:
            raise DataValidationError(
                f"{path}: line {i + 2} has {line.count(chr(9)) + 1} fields, expected {len(names)}"
            )
    if not body:
        return pl.DataFrame({n: pl.Series([], dtype=pl.Utf8) for n in names})
    return pl.read_csv(
        io.StringIO("\n".join(body)), separator="\t", has_header=False, new_columns=names,
        schema_overrides={n: pl.Utf8 for n in names}, quote_char=None,
    )


def parse_grouplens_100k(root: Path) -> MovieLens:
    """Parse ``u.data``, ``u.user`` and ``u.item`` (Latin-1, GroupLens layout)."""
    ratings = _read_delimited(root / "u.data", "\t", ["user_id", "item_id", "rating", "timestamp"], "utf-8")
    users = _read_delimited(root / "u.user", "|", ["user_id", "age", "gender", "occupation", "zip"], "latin-1")
    flags = [f"g{i}" for i in range(len(ML100K_GENRES))]
    raw_items = _read_delimited(
        root / "u.item", "|", ["item_id", "title", "release", "video", "url", *flags], "latin-1"
    )
    src = str(root / "u.item")
    for f in flags:
        raw_items = V.cast_column(raw_items, f, pl.Int8, source=src)
    genre_names = pl.Series(ML100K_GENRES)
    items = raw_items.select(
        "item_id",
        pl.col("title").str.strip_chars(),
        pl.col("release").str.slice(-4).alias("year"),
        pl.concat_list([pl.when(pl.col(f) == 1).then(pl.lit(g)) for f, g in zip(flags, genre_names)])
        .list.drop_nulls().alias("genres"),
    )
    return _validated(ratings, users, items, name="ml-100k", files=_files(root, "u.data", "u.user", "u.item"))


def parse_atomic_100k(root: Path) -> MovieLens:
    """Parse RecBole's atomic files ``ml-100k.{inter,user,item}``."""
    inter = _read_atomic(root / "ml-100k.inter")
    user = _read_atomic(root / "ml-100k.user")
    item = _read_atomic(root / "ml-100k.item")
    for frame, cols, path in (
        (inter, ["user_id", "item_id", "rating", "timestamp"], "ml-100k.inter"),
        (user, ["user_id", "age", "gender", "occupation", "zip_code"], "ml-100k.user"),
        (item, ["item_id", "movie_title", "release_year", "class"], "ml-100k.item"),
    ):
        V.require_columns(frame, cols, source=str(root / path))
    ratings = inter.select("user_id", "item_id", "rating", "timestamp")
    users = user.select("user_id", "age", "gender", "occupation", pl.col("zip_code").alias("zip"))
    items = item.select(
        "item_id",
        pl.col("movie_title").str.replace(r"\s*\(\d{4}\)\s*$", "").str.replace("^unkonwn$", "unknown")
        .alias("title"),
        # RecBole's conversion writes 'unkonwn' (sic) for the movie without a date and shifted
        # one title's year into it ('... (1995)' / 'V'): take a non-numeric year from the title.
        pl.when(pl.col("release_year").str.contains(r"^\d{4}$")).then(pl.col("release_year"))
        .otherwise(pl.col("movie_title").str.extract(r"\((\d{4})\)\s*$")).alias("year"),
        pl.col("class").fill_null("").str.split(" ").list.eval(pl.element().filter(pl.element() != "")).alias("genres"),
    )
    return _validated(ratings, users, items, name="ml-100k",
                      files=_files(root, "ml-100k.inter", "ml-100k.user", "ml-100k.item"))


def parse_ml1m(root: Path) -> MovieLens:
    """Parse MovieLens-1M's ``ratings.dat``, ``users.dat`` and ``movies.dat`` ('::', Latin-1)."""
    ratings = _read_delimited(root / "ratings.dat", "::", ["user_id", "item_id", "rating", "timestamp"], "latin-1")
    users = _read_delimited(root / "users.dat", "::", ["user_id", "gender", "age", "occupation", "zip"], "latin-1")
    movies = _read_delimited(root / "movies.dat", "::", ["item_id", "title", "genres"], "latin-1")
    users = V.cast_column(users, "occupation", pl.Int64, source=str(root / "users.dat"))
    V.require_range(users, "occupation", lo=0, hi=len(ML1M_OCCUPATIONS) - 1, source=str(root / "users.dat"))
    users = users.with_columns(
        pl.col("occupation").map_elements(lambda i: ML1M_OCCUPATIONS[i], return_dtype=pl.Utf8)
    ).select("user_id", "age", "gender", "occupation", "zip")
    items = movies.select(
        "item_id",
        pl.col("title").str.replace(r"\s*\(\d{4}\)\s*$", "").alias("title"),
        pl.col("title").str.extract(r"\((\d{4})\)\s*$").alias("year"),
        pl.col("genres").str.split("|").alias("genres"),
    )
    return _validated(ratings, users, items, name="ml-1m", files=_files(root, "ratings.dat", "users.dat", "movies.dat"))


def _files(root: Path, ratings: str, users: str, items: str) -> dict[str, str]:
    return {"ratings": str(root / ratings), "users": str(root / users), "items": str(root / items)}


def _validated(ratings: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame, *, name: str,
               files: dict[str, str]) -> MovieLens:
    """Types, ranges, nulls, duplicates, references and emptiness of the three frames."""
    fr, fu, fi = files["ratings"], files["users"], files["items"]
    for frame, src, what in ((ratings, fr, "ratings"), (users, fu, "users"), (items, fi, "items")):
        V.require_rows(frame, source=src, what=what)
    V.require_no_nulls(ratings, ["user_id", "item_id", "rating", "timestamp"], source=fr)
    for col in ("user_id", "item_id", "timestamp"):
        ratings = V.cast_column(ratings, col, pl.Int64, source=fr)
    ratings = V.cast_column(ratings, "rating", pl.Float32, source=fr)
    V.require_no_nulls(ratings, ["rating"], source=fr)
    V.require_range(ratings, "rating", lo=1, hi=5, source=fr)
    V.require_range(ratings, "user_id", lo=1, source=fr)
    V.require_range(ratings, "item_id", lo=1, source=fr)
    V.require_range(ratings, "timestamp", lo=0, source=fr)
    V.require_unique(ratings, ["user_id", "item_id", "timestamp"], source=fr)
    V.require_unique(ratings, ["user_id", "item_id"], source=fr)

    V.require_no_nulls(users, ["user_id", "age", "gender", "occupation"], source=fu)
    users = V.cast_column(users, "user_id", pl.Int64, source=fu)
    users = V.cast_column(users, "age", pl.Int64, source=fu)
    V.require_range(users, "age", lo=0, hi=120, source=fu)
    V.require_unique(users, ["user_id"], source=fu)
    users = users.with_columns(pl.col("zip").fill_null("").str.strip_chars(), pl.col("gender").str.strip_chars())

    V.require_no_nulls(items, ["item_id"], source=fi)
    items = V.cast_column(items, "item_id", pl.Int64, source=fi)
    V.require_range(items, "item_id", lo=1, source=fi)
    V.require_unique(items, ["item_id"], source=fi)
    items = items.with_columns(
        pl.col("title").fill_null("").str.strip_chars(),
        pl.col("year").cast(pl.Utf8).str.strip_chars().replace("", None),
    )
    items = V.cast_column(items, "year", pl.Int64, source=fi)
    V.require_range(items, "year", lo=1800, hi=2100, source=fi)

    V.require_references(ratings, "user_id", users.get_column("user_id"), source=fr, target=fu)
    V.require_references(ratings, "item_id", items.get_column("item_id"), source=fr, target=fi)
    return MovieLens(
        ratings=ratings.sort("user_id", "timestamp", "item_id"),
        users=users.sort("user_id"),
        items=items.select("item_id", "title", "year", pl.col("genres").cast(pl.List(pl.Utf8))).sort("item_id"),
        name=name,
    )


def parse_directory(root: str | Path) -> MovieLens:
    """Parse a user-supplied directory, recognising its layout by file names."""
    root = Path(root)
    if not root.is_dir():
        raise DataSourceError(f"{root} is not a directory")
    layouts = (
        (("u.data", "u.user", "u.item"), parse_grouplens_100k),
        (("ml-100k.inter", "ml-100k.user", "ml-100k.item"), parse_atomic_100k),
        (("ratings.dat", "users.dat", "movies.dat"), parse_ml1m),
    )
    for names, parser in layouts:
        if all((root / n).is_file() for n in names):
            return parser(root)
    for names, parser in layouts:  # a partial layout: say exactly which file is missing
        present = [n for n in names if (root / n).is_file()]
        if present:
            missing = [n for n in names if n not in present]
            raise DataSourceError(f"{root}: found {', '.join(present)} but not {', '.join(missing)}")
    raise DataSourceError(
        f"{root}: no MovieLens files found; expected u.data/u.user/u.item (GroupLens), "
        "ml-100k.inter/.user/.item (atomic) or ratings.dat/users.dat/movies.dat (MovieLens-1M)"
    )


# --------------------------------------------------------------------------- fetching


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download_grouplens(name: str, workdir: Path, timeout: float) -> tuple[MovieLens, dict]:
    spec = ARCHIVES[name]
    try:
        with urllib.request.urlopen(spec["url"], timeout=timeout) as resp:  # noqa: S310 (fixed https URL)
            blob = resp.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DataSourceError(f"could not reach {spec['url']}: {exc}") from exc
    md5 = hashlib.md5(blob).hexdigest()  # noqa: S324 (GroupLens publishes MD5)
    if md5 != spec["md5"]:
        raise DataSourceError(f"{spec['url']}: MD5 {md5} does not match the published {spec['md5']}")
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        zf.extractall(workdir)
    folder = workdir / name
    ml = parse_grouplens_100k(folder) if name == "ml-100k" else parse_ml1m(folder)
    return ml, {"source": "grouplens", "url": spec["url"], "md5": md5}


def _download_recbole(workdir: Path, timeout: float) -> tuple[MovieLens, dict]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           f"recbole=={RECBOLE_VERSION}", "-d", str(workdir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 120))
    except subprocess.TimeoutExpired as exc:
        raise DataSourceError(f"`{' '.join(cmd)}` timed out") from exc
    wheel = workdir / RECBOLE_WHEEL
    if proc.returncode != 0 or not wheel.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataSourceError(f"pip could not download {RECBOLE_WHEEL}: {tail[0]}")
    blob = wheel.read_bytes()
    if _sha256(blob) != RECBOLE_WHEEL_SHA256:
        raise DataSourceError(f"{RECBOLE_WHEEL}: SHA-256 {_sha256(blob)} does not match {RECBOLE_WHEEL_SHA256}")
    out = workdir / "atomic"
    out.mkdir()
    with zipfile.ZipFile(wheel) as zf:
        for fname, digest in RECBOLE_FILES_SHA256.items():
            data = zf.read(f"recbole/dataset_example/ml-100k/{fname}")
            if _sha256(data) != digest:
                raise DataSourceError(f"{RECBOLE_WHEEL}!{fname}: SHA-256 does not match {digest}")
            (out / fname).write_bytes(data)
    return parse_atomic_100k(out), {"source": "recbole-wheel", "wheel": RECBOLE_WHEEL, "sha256": RECBOLE_WHEEL_SHA256}


def raw_dir(data_dir: str | Path, name: str) -> Path:
    return Path(data_dir) / "raw" / name


def load_cached(data_dir: str | Path, name: str) -> MovieLens | None:
    """The cached frames if all three exist and match the manifest's SHA-256, else None."""
    folder = raw_dir(data_dir, name)
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return None
    meta = json.loads(manifest.read_text())
    frames = {}
    for f in FRAMES:
        path = folder / f"{f}.parquet"
        if not path.exists() or _sha256(path.read_bytes()) != meta.get("sha256", {}).get(f):
            return None
        frames[f] = pl.read_parquet(path)
    return MovieLens(**frames, name=name)


def fetch(name: str = "ml-100k", data_dir: str | Path = "data", *, source: str = "auto",
          timeout: float = 30.0, log=print) -> MovieLens:
    """Fetch (or read from cache) one MovieLens release, verified and validated.

    Args:
        name: ``ml-100k`` or ``ml-1m``.
        data_dir: cache root; frames go to ``data_dir/raw/NAME/``.
        source: ``auto`` (cache, then GroupLens, then the recbole wheel for ml-100k),
            ``grouplens``, ``recbole``, or a path to a directory the user already has.
        timeout: network timeout in seconds.
        log: where progress lines go.

    Returns:
        The validated frames.
    """
    if name not in ARCHIVES:
        raise DataSourceError(f"unknown data set {name!r}; known: {', '.join(ARCHIVES)}")
    if source in ("auto", "grouplens", "recbole"):
        cached = load_cached(data_dir, name)
        if cached is not None:
            log(f"{name}: using verified cache {raw_dir(data_dir, name)}")
            return cached
    with tempfile.TemporaryDirectory(prefix="recsys-fetch-") as tmp:
        work = Path(tmp)
        if source not in ("auto", "grouplens", "recbole"):
            ml = parse_directory(source)
            if ml.name != name:
                raise DataSourceError(f"{source} holds {ml.name}, not {name}")
            meta = {"source": "directory", "path": str(Path(source).resolve())}
        else:
            errors = []
            ml = None
            order = {"auto": ["grouplens", "recbole"], "grouplens": ["grouplens"], "recbole": ["recbole"]}[source]
            if name != "ml-100k":
                order = [o for o in order if o != "recbole"]
            for attempt in order:
                try:
                    log(f"{name}: fetching from {attempt} ...")
                    if attempt == "grouplens":
                        ml, meta = _download_grouplens(name, work / "gl", timeout)
                    else:
                        ml, meta = _download_recbole(work, timeout)
                    break
                except DataSourceError as exc:
                    errors.append(str(exc))
                    log(f"{name}: {attempt} failed: {exc}")
            if ml is None:
                raise DataSourceError(f"{name}: every source failed: " + " | ".join(errors))
    _write_cache(ml, data_dir, meta)
    log(f"{name}: verified and cached in {raw_dir(data_dir, name)} (source: {meta['source']})")
    return ml


def _write_cache(ml: MovieLens, data_dir: str | Path, meta: dict) -> None:
    folder = raw_dir(data_dir, ml.name)
    digests = {}
    for f in FRAMES:
        frame: pl.DataFrame = getattr(ml, f)
        atomic_write_with(folder / f"{f}.parquet", lambda p, fr=frame: fr.write_parquet(p, statistics=False))
        digests[f] = _sha256((folder / f"{f}.parquet").read_bytes())
    # The manifest is written last: a cache without it is treated as absent.
    atomic_write_json(folder / "manifest.json", {**meta, "name": ml.name, "sha256": digests,
                                                 "rows": {f: getattr(ml, f).height for f in FRAMES}})
