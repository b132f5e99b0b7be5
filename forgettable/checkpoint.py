"""Checkpoint folders written as one unit: config.json + model.safetensors + optimizer.safetensors.

A save builds the complete folder beside the destination, fsyncs it, then swaps it in with renames, so a crash
leaves the old checkpoint or the new one, never a mix (the one window, between the two renames, leaves the old
folder under a `.NAME.old-*` name, which `read_checkpoint` points to). config.json records the SHA-256 of both
tensor files, so a corrupted or truncated file is one clear `IntegrityError`, not a silently wrong model.
Tensors are safetensors, never pickles; the optimiser's Adam moments are stored by parameter name
(`prompts.3.exp_avg`), so a forgetting log can name exactly what was deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from protect.errors import ConfigError, IntegrityError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _plain(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def is_checkpoint(directory: str | Path) -> bool:
    """Whether `directory` holds a checkpoint written by `write_checkpoint`."""
    return (Path(directory) / CONFIG).is_file()


def write_checkpoint(
    directory: str | Path,
    meta: dict[str, Any],
    weights: dict[str, torch.Tensor],
    optimizer: dict[str, torch.Tensor],
) -> None:
    """Write the folder atomically; an existing destination must be a checkpoint (never a user folder)."""
    dest = Path(directory)
    if dest.exists() and not is_checkpoint(dest):
        raise ConfigError(f"{dest} exists and is not a model folder; choose a new --out")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(_plain(weights), str(tmp / WEIGHTS), metadata={"format": "pt"})
        save_file(_plain(optimizer), str(tmp / OPTIMIZER), metadata={"format": "pt"})
        files = {name: _sha256(tmp / name) for name in (WEIGHTS, OPTIMIZER)}
        (tmp / CONFIG).write_text(json.dumps({**meta, "files": files}, indent=2) + "\n", encoding="utf-8")
        for name in (WEIGHTS, OPTIMIZER, CONFIG):
            _fsync(tmp / name)
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old)
        else:
            os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def read_checkpoint(
    directory: str | Path,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(meta, weights, optimizer) of a checkpoint folder, checked against the SHA-256 in config.json."""
    src = Path(directory)
    if not src.is_dir():
        left = sorted(src.parent.glob(f".{src.name}.old-*"))
        if left:
            raise IntegrityError(
                f"{src} is missing: an interrupted save left the previous model at {left[0]}"
            )
        raise ConfigError(f"no model folder at {src}")
    if not is_checkpoint(src):
        raise ConfigError(f"{src} is not a model folder (no {CONFIG})")
    try:
        meta = json.loads((src / CONFIG).read_text(encoding="utf-8"))
        files = meta["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"{src / CONFIG} is corrupt: {e}") from e
    tensors = []
    for name in (WEIGHTS, OPTIMIZER):
        path = src / name
        if not path.is_file():
            raise IntegrityError(f"{path} is missing")
        if _sha256(path) != files.get(name):
            raise IntegrityError(f"{path} is corrupt or truncated (SHA-256 differs from config.json)")
        try:
            tensors.append(load_file(str(path)))
        except (SafetensorError, OSError) as e:
            raise IntegrityError(f"{path} cannot be read: {e}") from e
    return meta, tensors[0], tensors[1]
