"""The plug-in interface every base watermarker implements, and the name registry behind `--backend`.

AMUSE (arXiv 2403.05628) is agnostic to the per-image watermarker: it only decides *which* bits each image
carries. A backend embeds an l-bit payload into one image and extracts soft scores for it.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np

from protect.errors import ConfigError, UnknownNameError


@runtime_checkable
class WatermarkBackend(Protocol):
    """embed(image, bits, strength) -> image; extract(image, n) -> n soft scores in [-1, 1] (positive = bit
    1)."""

    name: str
    default_strength: float
    strength_range: tuple[float, float]  # the tested range: outside it a mark is lost or the image ruined

    def capacity(self, height: int, width: int) -> int:
        """How many payload bits one image of this size can carry."""
        ...

    def embed(self, image: np.ndarray, bits: np.ndarray, strength: float) -> np.ndarray:
        """uint8 (H, W, C) image with C in {1, 3} -> marked uint8 image of the same shape."""
        ...

    def extract(self, image: np.ndarray, n: int, strength: float | None = None) -> np.ndarray:
        """Soft scores for the first n payload bits (float array of length n); `strength` is the embedding
        strength where the decoder needs it (QIM step), ignored otherwise."""
        ...


def check_fits(backend: WatermarkBackend, image: np.ndarray, n: int) -> None:
    """One clear line when an image is too small for the payload."""
    h, w = image.shape[:2]
    cap = backend.capacity(h, w)
    if n > cap:
        raise ConfigError(
            f"a {w}x{h} image holds {cap} {backend.name} payload bits but {n} are needed: use larger "
            "images, a higher --tau (shorter per-image payload) or a shorter message"
        )


# Far larger than any image: a payload that does not fit here fits no image.
_HUGE_SIDE = 1 << 15


def check_payload(backend: WatermarkBackend, n: int) -> None:
    """One clear line, before any file is read, when no image of any size can carry n payload bits."""
    most = backend.capacity(_HUGE_SIDE, _HUGE_SIDE)
    if n > most:
        raise ConfigError(
            f"{n} payload bits per image are needed but the {backend.name} backend carries at most {most}: use "
            "a shorter message or a higher --tau (shorter per-image payload)"
        )


def check_strength(backend: WatermarkBackend, strength: float) -> float:
    """The strength if it lies in the backend's range; one clear line otherwise (0 or nan would leave images
    unmarked while reporting them marked, a huge value ruins them)."""
    lo, hi = getattr(backend, "strength_range", (0.0, math.inf))
    if not (math.isfinite(strength) and strength > 0 and lo <= strength <= hi):
        raise ConfigError(
            f"--strength {strength:g} is outside the {backend.name} range [{lo:g}, {hi:g}] "
            f"(default {backend.default_strength:g})"
        )
    return float(strength)


_BACKENDS: dict[str, type] = {}


def register_backend(name: str, cls: type, *, force: bool = False) -> None:
    if name in _BACKENDS and not force:
        raise ConfigError(f"watermark backend {name!r} is already registered")
    _BACKENDS[name] = cls


def list_backends() -> list[str]:
    return sorted(_BACKENDS)


def create_backend(name: str, **kwargs: object) -> WatermarkBackend:
    try:
        cls = _BACKENDS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown watermark backend {name!r}; choose one of {', '.join(list_backends())}"
        ) from None
    return cls(**kwargs)
