"""Checkpoint folders written as one unit: config.json + model.safetensors + optimizer.safetensors.

A save builds the complete folder beside the destination (files and folder fsynced), swaps it in with renames
and fsyncs the parent, so a crash leaves the old checkpoint or the new one, never a mix (the one window, between
the two renames, leaves the old folder under a `.NAME.old-*` name, which `read_checkpoint` points to).
config.json records the SHA-256 of both tensor files, so a corrupted or truncated file is one clear
`IntegrityError`, not a silently wrong model.
Tensors are safetensors, never pickles; the optimiser's Adam moments are stored by parameter name
(`prompts.3.exp_avg`), so a forgetting log can name exactly what was deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from protect.errors import ConfigError, IntegrityError
from protect.paths import naming_errors, swap_folder

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> None:
    """Create `path` holding `data` (not yet durable: see `_fsync_all`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(paths: list[Path]) -> None:
    """fsync files and folders concurrently: one wait for the disk instead of one per path.

    Sequential fsyncs cost a scheduler tick each on a busy machine (~4 ms, measured in the benchmark); issued
    together they overlap. Folders are only synced on POSIX (Windows cannot open them).
    """
    todo = [p for p in paths if os.name == "posix" or not p.is_dir()]
    if len(todo) == 1:
        _fsync(todo[0])
        return
    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        list(pool.map(_fsync, todo))


def _plain(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def is_checkpoint(directory: str | Path) -> bool:
    """Whether `directory` holds a checkpoint written by `write_checkpoint`."""
    return (Path(directory) / CONFIG).is_file()


def check_destination(directory: str | Path, *, outside: tuple[str | Path, ...] = ()) -> Path:
    """The real path a checkpoint may be written to, or a one-line refusal: an existing folder that is not a
    model, or holds files besides it (the swap would delete them), the current folder, or a folder that is or
    lies inside one of `outside` (the training data, the model being forgotten from). Callers check before the
    work that a refusal would waste; `write_checkpoint` checks again."""
    dest = Path(os.path.realpath(directory))
    for other in outside:
        real = Path(os.path.realpath(other))
        if dest == real or real in dest.parents:
            raise ConfigError(f"--out {directory} is or lies inside {other}; choose a folder outside it")
    if dest.exists():
        if not is_checkpoint(dest):
            raise ConfigError(f"{directory} exists and is not a model folder; choose a new --out")
        extra = sorted(p.name for p in dest.iterdir() if p.name not in (CONFIG, WEIGHTS, OPTIMIZER))
        if extra:
            raise ConfigError(
                f"{directory} holds files besides the model ({', '.join(extra[:3])}"
                f"{', ...' if len(extra) > 3 else ''}), which replacing the folder would delete: move them out"
            )
        here = Path.cwd().resolve()
        if here == dest or dest in here.parents:
            raise ConfigError(f"{directory} is or holds the current folder: run this from outside it")
    return dest


def write_checkpoint(
    directory: str | Path,
    meta: dict[str, Any],
    weights: dict[str, torch.Tensor],
    optimizer: dict[str, torch.Tensor],
) -> None:
    """Write the folder atomically; an existing destination must be a checkpoint and nothing else.

    The swap replaces the whole folder, so it refuses a folder that holds anything besides the checkpoint (it
    would be deleted with the old version) or the current working folder (the shell would be left in a deleted
    folder); a symlink is followed, so the folder it points to is updated and the link still leads to the model.
    Copies left by an interrupted earlier swap (`stale_copies`) hold superseded tensors, such as a deleted
    prompt, and are removed once the new folder is in place (`_abandoned`: a `.tmp-*` only when it is old).
    """
    dest = check_destination(directory)
    stale = stale_copies(dest)  # superseded versions, removed once the new folder is in place
    dest.parent.mkdir(parents=True, exist_ok=True)
    blobs = {
        WEIGHTS: save(_plain(weights), metadata={"format": "pt"}),
        OPTIMIZER: save(_plain(optimizer), metadata={"format": "pt"}),
    }
    config = {**meta, "files": {name: _sha256(blob) for name, blob in blobs.items()}}
    blobs[CONFIG] = (json.dumps(config, indent=2) + "\n").encode("utf-8")
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        with naming_errors(dest):
            for name, blob in blobs.items():
                _write(tmp / name, blob)
            _fsync_all([tmp / name for name in blobs] + [tmp])
        old = swap_folder(tmp, dest)
        _fsync_all([dest.parent])
        if old is not None:
            for path in [old, *(p for p in stale if _abandoned(p))]:
                shutil.rmtree(path, ignore_errors=True)  # another save may have removed it already
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def stale_copies(directory: str | Path) -> list[Path]:
    """Folders `.NAME.old-*` and `.NAME.tmp-*` beside an existing model folder: left by a killed save, after its
    new folder was in place (a superseded version: after forgetting, the deleted prompt) or before (a version
    that never became the model, which may still hold a prompt forgotten since)."""
    dest = Path(os.path.realpath(directory))
    if not dest.is_dir():
        return []
    return sorted([*dest.parent.glob(f".{dest.name}.old-*"), *dest.parent.glob(f".{dest.name}.tmp-*")])


ABANDONED_S = 600.0  # a `.tmp-*` folder untouched this long is no live save's (a save takes seconds)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _abandoned(path: Path) -> bool:
    """Whether a stale copy may be deleted: every `.old-*`, and a `.tmp-*` only once no save can still be
    writing it (a concurrent save of the same folder must not lose its temporary folder)."""
    if ".old-" in path.name:
        return True
    return time.time() - _mtime(path) > ABANDONED_S


def _missing(src: Path) -> IntegrityError | ConfigError:
    """Why a model folder is missing: a save killed between its two renames leaves the new version, complete,
    in `.NAME.tmp-*` and the previous one in `.NAME.old-*`; the previous one may hold what the save removed."""
    old = sorted(src.parent.glob(f".{src.name}.old-*"))
    new = []
    for tmp in sorted(src.parent.glob(f".{src.name}.tmp-*"), key=_mtime, reverse=True):  # newest first
        try:
            read_checkpoint(tmp)
        except (IntegrityError, ConfigError, OSError):
            continue  # killed while it was being written, or unreadable
        new.append(tmp)
    if new:
        prev = f"; the previous version at {old[0]} may hold what that save removed" if old else ""
        return IntegrityError(
            f"{src} is missing: an interrupted save left its new version, complete, at {new[0]}: rename it to "
            f"{src.name}{prev}"
        )
    if old:
        return IntegrityError(f"{src} is missing: an interrupted save left the previous model at {old[0]}")
    return ConfigError(f"no model folder at {src}")


_LOG_KEYS = ("class", "at", "deleted", "kept")


def _is_log_entry(entry: Any) -> bool:
    """A forgetting-log entry as `plan_forgetting` writes it: text fields, and the list of deleted tensors."""
    if not isinstance(entry, dict) or not all(k in entry for k in _LOG_KEYS):
        return False
    texts = [entry[k] for k in ("class", "at", "kept")] + [entry.get("also_deleted", "")]
    deleted = entry["deleted"]
    return (
        all(isinstance(t, str) for t in texts)
        and isinstance(deleted, list)
        and all(isinstance(d, str) for d in deleted)
    )


def _check_meta(meta: Any, where: Path) -> None:
    """The parts of config.json besides the model config have the shapes their readers expect (a hand edit may
    break them): an object of tensor digests, a training recipe object and a list of forgetting-log entries."""
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise IntegrityError(f"{where} is corrupt: no object of tensor file digests")
    if not isinstance(meta.get("recipe", {}), dict):
        raise IntegrityError(f"{where} is corrupt: 'recipe' must be an object, got {meta['recipe']!r}")
    log = meta.get("forgetting_log", [])
    entries_ok = isinstance(log, list) and all(_is_log_entry(e) for e in log)
    if not entries_ok:
        raise IntegrityError(
            f"{where} is corrupt: 'forgetting_log' must be a list of entries with {', '.join(_LOG_KEYS)}"
        )


def read_checkpoint(
    directory: str | Path,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(meta, weights, optimizer) of a checkpoint folder, checked against the SHA-256 in config.json."""
    src = Path(directory)
    if not src.is_dir():
        raise _missing(src)
    if not is_checkpoint(src):
        raise ConfigError(f"{src} is not a model folder (no {CONFIG})")
    try:
        meta = json.loads((src / CONFIG).read_text(encoding="utf-8"))
        files = meta["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"{src / CONFIG} is corrupt: {e}") from e
    _check_meta(meta, src / CONFIG)
    tensors = []
    for name in (WEIGHTS, OPTIMIZER):
        path = src / name
        if not path.is_file():
            raise IntegrityError(f"{path} is missing")
        data = path.read_bytes()
        if _sha256(data) != files.get(name):
            raise IntegrityError(f"{path} is corrupt or truncated (SHA-256 differs from config.json)")
        try:
            tensors.append(load(data))
        except (SafetensorError, OSError) as e:
            raise IntegrityError(f"{path} cannot be read: {e}") from e
    return meta, tensors[0], tensors[1]
