"""Helpers shared by the benchmark scripts: data paths, thread settings, result files (JSON + markdown table)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHARED_DATA = Path(os.environ.get("PROTECT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def load_cifar(train_size: int | None = None, test_size: int | None = None) -> dict[str, np.ndarray]:
    """The CIFAR-10 subset in shared/data, optionally class-balanced down to `train_size` / `test_size` images."""
    out = {}
    for split, size in (("train", train_size), ("test", test_size)):
        with np.load(SHARED_DATA / f"cifar10_{split}_{'10k' if split == 'train' else '2k'}.npz") as d:
            x, y, classes = d["x"], d["y"], d["classes"]
        if size is not None and size < len(x):
            per = size // 10
            idx = np.concatenate([np.flatnonzero(y == c)[:per] for c in range(10)])
            x, y = x[idx], y[idx]
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    out["classes"] = classes
    return out


def markdown_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """The lines of a markdown table."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(str(c) for c in r) + " |" for r in rows],
    ]


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
    }


class Results:
    """A results file that is rewritten (atomically) after every arm, so a long run can be resumed."""

    def __init__(self, name: str, config: dict[str, Any], resume: bool = False) -> None:
        self.path = RESULTS / f"{name}.json"
        self.data: dict[str, Any] = {"config": config, "machine": machine(), "arms": {}}
        if resume and self.path.exists():
            old = json.loads(self.path.read_text())
            if old.get("config") == config:
                self.data["arms"] = old.get("arms", {})

    def has(self, arm: str) -> bool:
        return arm in self.data["arms"]

    def put(self, arm: str, value: dict[str, Any]) -> None:
        self.data["arms"][arm] = value
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        RESULTS.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(self.path)

    def table(self, header: list[str], rows: list[list[Any]], title: str, notes: str = "") -> str:
        lines = [f"# {title}", "", notes, "", *markdown_table(header, rows)]
        text = "\n".join(lines) + "\n"
        self.path.with_suffix(".md").write_text(text)
        return text
