"""What can happen to released images before a victim trains on them: mixing with clean copies, re-encoding, greyscale.

Mixing follows the BEO paper's protocol (Zhang et al. 2025, `MultiDatasetMixer`): protected copies *replace* their clean
versions at fraction p, so the training set size never changes; the fair comparison is `clean_only`, the (1 - p) clean
part alone. JPEG and greyscale are the known breaks of unlearnable examples (Liu et al., ICML 2023, Image Shortcut
Squeezing).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def protected_indices(n: int, p: float, *, seed: int) -> np.ndarray:
    """A fixed random subset (fraction p) of sample ids; the same seed gives the same subset."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[: int(round(p * n))])


def mix(clean: np.ndarray, protected: np.ndarray, p: float, *, seed: int) -> np.ndarray:
    """Replace a fraction p of the clean images by their protected copies (aligned by sample id)."""
    if clean.shape != protected.shape:
        raise ValueError(f"clean {clean.shape} and protected {protected.shape} must be aligned")
    out = clean.copy()
    idx = protected_indices(len(clean), p, seed=seed)
    out[idx] = protected[idx]
    return out


def clean_only(x: np.ndarray, y: np.ndarray, p: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The clean (1 - p) part that `mix(..., p)` leaves untouched: the baseline every mixed result is compared with."""
    keep = np.setdiff1d(np.arange(len(x)), protected_indices(len(x), p, seed=seed))
    return x[keep], y[keep]


def protected_part(
    protected: np.ndarray, y: np.ndarray, p: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The fraction p that `mix(..., p)` replaces, as protected copies: the fine-tuning set of the authors' second
    protocol (train on `clean_only`, then fine-tune on this)."""
    idx = protected_indices(len(protected), p, seed=seed)
    return protected[idx], y[idx]


def jpeg(x: np.ndarray, quality: int = 75) -> np.ndarray:
    """Re-encode every uint8 (N, H, W, C) image as JPEG at `quality` and decode it again."""
    out = np.empty_like(x)
    for i, img in enumerate(x):
        buf = io.BytesIO()
        Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(
            buf, format="JPEG", quality=quality
        )
        dec = np.asarray(Image.open(buf))
        out[i] = dec[..., None] if dec.ndim == 2 else dec
    return out


def grayscale(x: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma replicated over the colour channels (the victim's input shape is unchanged)."""
    luma = np.round(x[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    return np.repeat(np.clip(luma, 0, 255).astype(np.uint8)[..., None], x.shape[-1], axis=-1)
