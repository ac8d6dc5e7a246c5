"""Shared fixtures: a tiny MovieLens-like world, written in each on-disk layout, built in well
under a second. Threads are pinned to 1 so results are fast and deterministic."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
          "Thriller", "War", "Western")
OCCUPATIONS = ("student", "engineer", "artist", "writer", "other")


def tiny_world(n_users: int = 30, n_items: int = 40, seed: int = 0) -> dict:
    """Ratings with repeated timestamps, users and items (one Latin-1 title, one unknown year)."""
    rng = np.random.default_rng(seed)
    ratings = []
    for u in range(1, n_users + 1):
        n = int(rng.integers(4, 16))
        items = rng.choice(np.arange(1, n_items + 1), size=n, replace=False)
        t0 = 880_000_000 + int(rng.integers(0, 1_000_000))
        ts = t0 + np.sort(rng.integers(0, 5, size=n)) * 60  # ties: several ratings per timestamp
        for i, t in zip(items, ts):
            ratings.append((u, int(i), int(rng.integers(1, 6)), int(t)))
    users = [(u, int(rng.integers(12, 70)), "MF"[u % 2], OCCUPATIONS[u % len(OCCUPATIONS)],
              f"{int(rng.integers(0, 99999)):05d}" if u % 7 else "T8H1N") for u in range(1, n_users + 1)]
    items = []
    for i in range(1, n_items + 1):
        flags = [0] * len(GENRES)
        for g in rng.choice(np.arange(1, len(GENRES)), size=int(rng.integers(1, 4)), replace=False):
            flags[int(g)] = 1
        title = "Café Society (1995)" if i == 1 else f"Movie {i} ({1950 + i})"
        date = "" if i == 2 else f"01-Jan-{1950 + i}"
        items.append((i, title, date, flags))
    return {"ratings": ratings, "users": users, "items": items}


def write_grouplens(root, world: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in world["ratings"]))
    (root / "u.user").write_bytes("".join(f"{u}|{a}|{g}|{o}|{z}\n" for u, a, g, o, z in world["users"]).encode("latin-1"))
    lines = [f"{i}|{title}|{date}||http://x/{i}|" + "|".join(map(str, flags)) + "\n" for i, title, date, flags in world["items"]]
    (root / "u.item").write_bytes("".join(lines).encode("latin-1"))


def write_atomic(root, world: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in world["ratings"]]
    user = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    user += [f"{u}\t{a}\t{g}\t{o}\t{z}" for u, a, g, o, z in world["users"]]
    item = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for i, title, date, flags in world["items"]:
        genres = " ".join(g for g, f in zip(GENRES, flags) if f)
        item.append(f"{i}\t{title.rsplit(' (', 1)[0]}\t{date[-4:] if date else 'unkonwn'}\t{genres}")
    for name, rows in (("inter", inter), ("user", user), ("item", item)):
        (root / f"ml-100k.{name}").write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_ml1m(root, world: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in world["ratings"]))
    age_codes = (1, 18, 25, 35, 45, 50, 56)
    (root / "users.dat").write_bytes("".join(
        f"{u}::{g}::{age_codes[u % 7]}::{u % 21}::{z}\n" for u, a, g, o, z in world["users"]).encode("latin-1"))
    lines = []
    for i, title, date, flags in world["items"]:
        genres = "|".join(g for g, f in zip(GENRES, flags) if f)
        lines.append(f"{i}::{title}::{genres}\n")
    (root / "movies.dat").write_bytes("".join(lines).encode("latin-1"))


@pytest.fixture
def world() -> dict:
    return tiny_world()


@pytest.fixture
def grouplens_dir(tmp_path, world):
    root = tmp_path / "ml-100k"
    write_grouplens(root, world)
    return root


@pytest.fixture
def tiny_ml(grouplens_dir):
    from recsys.data.sources.movielens import parse_directory

    return parse_directory(grouplens_dir)


@pytest.fixture
def prepared(tmp_path, tiny_ml):
    """A prepared tiny data set (cold fraction 0.2, 4 negatives, seed 0)."""
    from recsys.data.prepare import PrepareConfig, prepare_movielens

    out = tmp_path / "prepared"
    prepare_movielens(tiny_ml, out, PrepareConfig())
    return out
