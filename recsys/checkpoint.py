"""Checkpoints (resumable training state) and published models (safetensors + manifest).

Two kinds of files, two trust levels:

* ``checkpoint.pt`` holds everything a run needs to resume exactly: model, optimiser, weighting
  strategy, RNG state, position in the epoch, early-stopping state. It is written atomically
  (temporary file, fsync, rename) and read with ``torch.load(weights_only=True)``, never with
  pickle's full power.
* ``model.safetensors`` + ``manifest.json`` is what a run publishes: the best weights as
  safetensors (no code can hide in it), and a manifest with the SHA-256 of every published
  file, the model spec and the training config. Loading verifies every hash first.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from recsys.errors import CheckpointError
from recsys.io import atomic_path, atomic_write_json

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (tensors, numbers, strings, lists and dicts only) atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a damaged file is a `CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} not found: nothing to resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means the file is not a checkpoint of ours
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from exc


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def publish(run_dir: str | Path, state_dict: dict[str, torch.Tensor], *, manifest: dict[str, Any],
            extra_files: tuple[str, ...] = ()) -> dict[str, Any]:
    """Write ``model.safetensors`` and ``manifest.json`` (hashes of it and of `extra_files`).

    Args:
        run_dir: the run directory.
        state_dict: the model's weights.
        manifest: model spec, config, metrics … recorded beside the hashes.
        extra_files: other files of `run_dir` to hash (e.g. ``schema.json``).

    Returns:
        The manifest written.
    """
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(run_dir / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    files = {name: sha256_file(run_dir / name) for name in (WEIGHTS, *extra_files)}
    out = {**manifest, "files": files}
    atomic_write_json(run_dir / MANIFEST, out)
    return out


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        raise CheckpointError(f"{path} not found: {run_dir} holds no published model; train one with `recsys train`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from exc


def load_published(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Verify every hash in the manifest, then read the weights.

    Returns:
        (manifest, state_dict).
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    for name, digest in manifest.get("files", {}).items():
        path = run_dir / name
        if not path.exists():
            raise CheckpointError(f"{path} is listed in {MANIFEST} but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise CheckpointError(f"{path}: SHA-256 {actual[:12]}… does not match the manifest's {digest[:12]}…")
    if WEIGHTS not in manifest.get("files", {}):
        raise CheckpointError(f"{run_dir / MANIFEST} does not list {WEIGHTS}")
    return manifest, load_file(str(run_dir / WEIGHTS))
