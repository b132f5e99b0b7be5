"""Forgetting a class is a deletion: drop the prompt and the optimiser state, swap the folder in atomically, log
what went and when. No data, no gradient step (arXiv 2509.15230, where forgetting is only an inference argument;
here it is physical).

`plan_forgetting` is the one place that validates a request and writes the log entries; the in-memory model
(`PreForgettableModel.forget_`) and the on-disk path (`forget_checkpoint`) both apply its plan. The on-disk path
edits the tensor files directly (read, SHA-256 check, delete keys, atomic write) without building the network, so
its cost is the file I/O of a small checkpoint, not model construction.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from forgettable.checkpoint import read_checkpoint, write_checkpoint
from forgettable.config import ForgettableConfig
from protect.errors import ConfigError, IntegrityError


@dataclass
class ForgetResult:
    """What a `forget_checkpoint` call did."""

    directory: str
    forgotten: list[str]
    already_forgotten: list[str]
    remaining: list[str]
    seconds: float
    log: list[dict[str, Any]] = field(default_factory=list)


def plan_forgetting(
    config: ForgettableConfig, class_names: list[str], optimizer_keys: Iterable[str]
) -> list[dict[str, Any]]:
    """One log entry per class of `class_names` whose prompt is still present (nothing is changed here).

    Every name is validated first (`UnknownNameError` names the valid ones); forgetting every remaining class
    is refused. The whole optimiser state is deleted, not only the prompt's moments: Adam's moments of shared
    weights average gradients that contain the prompt (in one benchmark run a row of a q/k/v moment had cosine
    0.97 with the deleted prompt).
    """
    ids = [config.class_id(name) for name in class_names]
    present = set(config.present or [])
    if ids and not present - set(ids):
        raise ConfigError("refusing to forget every class: the model would have nothing left to predict")
    keys = sorted(optimizer_keys)
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entries: list[dict[str, Any]] = []
    for name, c in dict(zip(class_names, ids, strict=True)).items():
        if c not in present:
            continue
        moments = [k for k in keys if k.startswith(f"prompts.{c}.")]
        entries.append(
            {
                "class": name,
                "id": c,
                "at": at,
                "deleted": [f"prompts.{c}", *moments],
                "also_deleted": f"{len(keys) - len(moments)} other optimiser tensors "
                "(shared-weight moments saw the prompt)"
                if keys
                else "no optimiser state (none was left)",
                "kept": "head row (shared head: it saw the class during training)"
                if config.head == "shared"
                else "nothing (prompt-tied head: the class's head row was its prompt)",
            }
        )
    return entries


def remaining_ids(config: ForgettableConfig, entries: list[dict[str, Any]]) -> list[int]:
    """`config.present` without the classes of `entries`."""
    gone = {e["id"] for e in entries}
    return [c for c in config.present or [] if c not in gone]


def forget_checkpoint(
    model_dir: str | Path, classes: list[str], *, out: str | Path | None = None
) -> ForgetResult:
    """Delete `classes` from the model at `model_dir` (in place, or into a new folder `out`).

    With `out`, the original folder still holds the prompts: delete it too if the goal is erasure.
    Unknown class names raise `UnknownNameError` before anything is written; repeating a call changes nothing.
    """
    from forgettable.train import Recipe  # train imports the model, which imports this module

    start = time.perf_counter()
    meta, weights, optimizer = read_checkpoint(model_dir)
    if out is not None and Path(out).exists():
        if not Path(out).is_dir() or not os.path.samefile(out, model_dir):
            raise ConfigError(f"{out} exists; choose a new --out (or leave it out to forget in place)")
        out = None  # the same folder: in place
    config = ForgettableConfig.from_meta(meta, model_dir)
    Recipe.stored(meta.get("recipe", {}), Path(model_dir) / "config.json")  # not carried on if hand-broken
    stored = {int(k.split(".")[1]) for k in weights if k.startswith("prompts.")}
    if stored != set(config.present or []):
        raise IntegrityError(
            f"{model_dir}: prompts in model.safetensors {sorted(stored)} differ from config.json {config.present}"
        )
    entries = plan_forgetting(config, classes, optimizer)
    for entry in entries:
        del weights[f"prompts.{entry['id']}"]
    if entries:
        optimizer = {}
        config.present = remaining_ids(config, entries)
    dest = Path(out) if out is not None else Path(model_dir)
    if entries or out is not None:
        meta = {
            **meta,
            "config": config.to_dict(),
            "forgetting_log": [*meta.get("forgetting_log", []), *entries],
        }
        meta.pop("files", None)
        write_checkpoint(dest, meta, weights, optimizer)
    done = [e["class"] for e in entries]
    return ForgetResult(
        directory=str(dest),
        forgotten=done,
        already_forgotten=[c for c in classes if c not in done],
        remaining=config.present_names,
        seconds=time.perf_counter() - start,
        log=entries,
    )
