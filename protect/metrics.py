"""Image-quality numbers reported for every protected copy (computed on the pixels as saved)."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def linf(original: np.ndarray, saved: np.ndarray) -> int:
    """Largest absolute pixel change, in 0..255 units."""
    return int(np.abs(original.astype(np.int16) - saved.astype(np.int16)).max(initial=0))


def psnr(original: np.ndarray, saved: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    mse = float(np.mean((original.astype(np.float64) - saved.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(original: np.ndarray, saved: np.ndarray) -> float:
    """Structural similarity (scikit-image), over colour channels; tiny images use the largest odd window that fits."""
    win = min(7, *original.shape[:2])
    win -= 1 - win % 2
    if win < 3:
        return float("nan")
    return float(structural_similarity(original, saved, channel_axis=-1, data_range=255, win_size=win))


def perturbation_kept(original: np.ndarray, intended: np.ndarray, saved: np.ndarray) -> float:
    """Share of the intended perturbation that survives encoding: <d_saved, d_intended> / ||d_intended||^2.

    1.0 for lossless output; lossy re-encoding (JPEG, WebP) shows here how much of the protection is left.
    """
    d_int = intended.astype(np.float64) - original
    d_sav = saved.astype(np.float64) - original
    denom = float((d_int**2).sum())
    return 1.0 if denom == 0 else float((d_sav * d_int).sum() / denom)


def quality_row(original: np.ndarray, saved: np.ndarray) -> dict[str, float | int]:
    """The per-image quality fields every report carries; `unchanged` flags a copy identical to its original."""
    p = psnr(original, saved)
    change = linf(original, saved)
    return {
        "psnr": round(p, 3) if np.isfinite(p) else None,
        "ssim": round(ssim(original, saved), 5),
        "linf": change,
        "unchanged": change == 0,
    }
