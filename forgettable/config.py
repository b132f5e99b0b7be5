"""The model's configuration: a typed dataclass saved as `config.json` next to `model.safetensors`.

Class ids are fixed at training time (`class_names[i]` is id `i`); forgetting removes ids from `present`
but never renumbers, so a shared head keeps its C outputs exactly as in the paper (arXiv 2509.15230).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from protect.errors import ConfigError, IntegrityError

TUNINGS = ("lora", "full", "prompts")
HEADS = ("shared", "prompt_tied")
_COUNTS = ("image_size", "channels", "patch_size", "dim", "depth", "heads", "lora_rank")
_RATIOS = ("mlp_ratio", "lora_alpha")


def is_number(value: Any) -> bool:
    """A finite int or float (JSON may hold NaN and Infinity; bool is an int to Python, not to us)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value: Any, what: str, channels: int, *, positive: bool = False) -> list[float]:
    """`value` as `channels` floats (a hand-edited config.json may hold anything)."""
    ok = isinstance(value, list | tuple) and len(value) == channels and all(is_number(v) for v in value)
    if not ok or (positive and min(value) <= 0):
        need = "positive numbers" if positive else "numbers"
        raise ConfigError(f"{what} needs {channels} {need} (one per channel), got {value!r}")
    return [float(v) for v in value]


@dataclass
class ForgettableConfig:
    """Architecture of a pre-forgettable classifier.

    Args:
        class_names: one name per class id.
        backbone: `tiny-vit-32`, `tiny-vit-8`, `open_clip:MODEL[:TAG]` or `torchvision:NAME`.
        tuning: `lora` (frozen backbone + LoRA on attention q/v, as in the paper), `full` (every weight
            trained) or `prompts` (frozen backbone, only prompts and head trained: no weight that every class
            uses learns from the class, so less of it survives the prompt's deletion).
        head: `shared` (one linear head, as in the paper) or `prompt_tied` (logit_c = <g(h), u(P_c)>: deleting
            the prompt deletes the class's head row too).
        present: class ids whose prompt is still in the bank (None: all).
    """

    class_names: list[str]
    backbone: str = "tiny-vit-32"
    image_size: int = 32
    channels: int = 3
    patch_size: int = 4
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    tuning: str = "full"
    lora_rank: int = 4
    lora_alpha: float = 4.0
    head: str = "shared"
    mean: list[float] | None = None
    std: list[float] | None = None
    present: list[int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str):
            raise ConfigError(f"backbone must be a name, got {self.backbone!r}")
        for key in _COUNTS:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        for key in _RATIOS:
            if not is_number(getattr(self, key)) or getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be a positive number, got {getattr(self, key)!r}")
        if not isinstance(self.class_names, list) or not all(isinstance(c, str) for c in self.class_names):
            raise ConfigError(f"class_names must be a list of names, got {self.class_names!r}")
        if len(self.class_names) < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {self.class_names!r}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"class names must be unique, got {self.class_names!r}")
        if self.tuning not in TUNINGS:
            raise ConfigError(f"tuning must be one of {', '.join(TUNINGS)}, got {self.tuning!r}")
        if self.head not in HEADS:
            raise ConfigError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        mean = [0.5] * self.channels if self.mean is None else self.mean
        std = [0.25] * self.channels if self.std is None else self.std
        self.mean = _numbers(mean, "mean", self.channels)
        self.std = _numbers(std, "std", self.channels, positive=True)
        if self.present is None:
            self.present = list(range(len(self.class_names)))
        if not isinstance(self.present, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in self.present
        ):
            raise ConfigError(f"present must be a list of class ids, got {self.present!r}")
        self.present = sorted(set(self.present))
        if any(not 0 <= c < len(self.class_names) for c in self.present):
            raise ConfigError(
                f"present class ids must be within 0..{len(self.class_names) - 1}: {self.present}"
            )

    @property
    def present_names(self) -> list[str]:
        """Names of the classes whose prompt is still in the bank."""
        return [self.class_names[c] for c in self.present or []]

    def class_id(self, name: str) -> int:
        """The id of class `name`; unknown names are one clear error listing the valid ones."""
        from protect.errors import UnknownNameError

        if name not in self.class_names:
            raise UnknownNameError(f"unknown class {name!r}; this model knows: {', '.join(self.class_names)}")
        return self.class_names.index(name)

    def architecture(self) -> dict[str, Any]:
        """The sizes and input normalisation that `fit(arch=...)` rebuilds this backbone from."""
        keys = (
            "image_size",
            "channels",
            "patch_size",
            "dim",
            "depth",
            "heads",
            "mlp_ratio",
            "lora_rank",
            "lora_alpha",
            "mean",
            "std",
        )
        return {k: getattr(self, k) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ForgettableConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_meta(cls, meta: dict[str, Any], where: str | Path) -> ForgettableConfig:
        """The config stored in a checkpoint's config.json; anything unusable is one `IntegrityError`."""
        try:
            return cls.from_dict(meta["config"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise IntegrityError(f"{where}: config.json has no valid model config ({e})") from e
