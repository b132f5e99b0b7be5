"""Image-quality numbers reported for every protected copy (computed on the pixels as saved).

Each is accumulated over strips of about a megapixel, so measuring a 100-megapixel photo costs tens of megabytes, not
the gigabytes a whole-image float64 SSIM takes (1.4 GB for 12 megapixels with scikit-image in one call).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from skimage.metrics import structural_similarity

STRIP_PIXELS = 2**20


def _strips(height: int, width: int, halo: int = 0) -> Iterator[tuple[slice, slice]]:
    """Row strips of about STRIP_PIXELS covering rows [halo, height - halo): (the rows to read, with `halo` rows
    on each side, and the strip's own rows within them)."""
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for top in range(halo, height - halo, rows):
        bottom = min(top + rows, height - halo)
        yield slice(top - halo, bottom + halo), slice(halo, halo + bottom - top)


def linf(original: np.ndarray, saved: np.ndarray) -> int:
    """Largest absolute pixel change, in 0..255 units."""
    return max(
        (
            int(np.abs(original[r].astype(np.int16) - saved[r]).max(initial=0))
            for r, _ in _strips(*original.shape[:2])
        ),
        default=0,
    )


def psnr(original: np.ndarray, saved: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    squares = sum(
        float(((original[r].astype(np.float64) - saved[r]) ** 2).sum())
        for r, _ in _strips(*original.shape[:2])
    )
    mse = squares / max(original.size, 1)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(original: np.ndarray, saved: np.ndarray) -> float:
    """Structural similarity (scikit-image), over colour channels; tiny images use the largest odd window that fits.

    scikit-image's mean SSIM is the mean of its SSIM map without a border of (win - 1) / 2 pixels; the map is
    computed here strip by strip, each strip read with that border of rows around it, so every value is the one the
    whole-image call gives and the mean is the same.
    """
    win = min(7, *original.shape[:2])
    win -= 1 - win % 2
    if win < 3:
        return float("nan")
    pad = (win - 1) // 2
    total, count = 0.0, 0
    for rows, inner in _strips(*original.shape[:2], halo=pad):
        _, smap = structural_similarity(
            original[rows], saved[rows], channel_axis=-1, data_range=255, win_size=win, full=True
        )
        kept = smap[inner, pad : smap.shape[1] - pad]
        total, count = total + float(kept.sum(dtype=np.float64)), count + kept.size
    return total / count


def perturbation_kept(original: np.ndarray, intended: np.ndarray, saved: np.ndarray) -> float:
    """Share of the intended perturbation that survives encoding: <d_saved, d_intended> / ||d_intended||^2.

    1.0 for lossless output; lossy re-encoding (JPEG, WebP) shows here how much of the protection is left.
    """
    dot = denom = 0.0
    for r, _ in _strips(*original.shape[:2]):
        d_int = intended[r].astype(np.float64) - original[r]
        d_sav = saved[r].astype(np.float64) - original[r]
        dot, denom = dot + float((d_sav * d_int).sum()), denom + float((d_int**2).sum())
    return 1.0 if denom == 0 else dot / denom


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
