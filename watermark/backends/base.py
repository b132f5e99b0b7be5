"""The plug-in interface every base watermarker implements, and the name registry behind `--backend`.

AMUSE (arXiv 2403.05628) is agnostic to the per-image watermarker: it only decides *which* bits each image
carries. A backend embeds an l-bit payload into one image and extracts soft scores for it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from protect.errors import ConfigError, UnknownNameError


@runtime_checkable
class WatermarkBackend(Protocol):
    """embed(image, bits, strength) -> image; extract(image, n) -> n soft scores in [-1, 1] (positive = bit
    1)."""

    name: str
    default_strength: float

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
