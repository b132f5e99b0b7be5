"""Forgetting a class is a deletion: load the checkpoint, drop the prompt and the optimiser state, swap the
folder in atomically, log what went and when. No data, no gradient step (arXiv 2509.15230, made physical).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgettable.model import PreForgettableModel


@dataclass
class ForgetResult:
    """What a `forget_checkpoint` call did."""

    directory: str
    forgotten: list[str]
    already_forgotten: list[str]
    remaining: list[str]
    seconds: float
    log: list[dict[str, Any]] = field(default_factory=list)


def forget_checkpoint(
    model_dir: str | Path, classes: list[str], *, out: str | Path | None = None
) -> ForgetResult:
    """Delete `classes` from the model at `model_dir` (in place, or into a new folder `out`).

    With `out`, the original folder still holds the prompts: delete it too if the goal is erasure.
    Unknown class names raise `UnknownNameError` before anything is written; repeating a call changes nothing.
    """
    start = time.perf_counter()
    model = PreForgettableModel.from_pretrained(model_dir)
    entries = model.forget_(classes)
    dest = Path(out) if out is not None else Path(model_dir)
    if entries or out is not None:
        model.save_pretrained(dest)
    done = [e["class"] for e in entries]
    return ForgetResult(
        directory=str(dest),
        forgotten=done,
        already_forgotten=[c for c in classes if c not in done],
        remaining=model.config.present_names,
        seconds=time.perf_counter() - start,
        log=entries,
    )
