"""Classical DWT + DCT watermark: dithered quantisation-index modulation (QIM) on luminance.

One Haar DWT level (PyWavelets), 4x4 orthonormal DCT blocks of the LL band (each covers 8x8 pixels), two
carriers per block: the (0, 1) and (1, 0) coefficients, i.e. the block's horizontal and vertical low-frequency
gradients. They survive JPEG, brightness changes and mild resizing; a crop that moves the 8-pixel grid breaks
them. Payload bits are tiled cyclically over the carriers in a fixed interleaved order, so a short payload is
simply repeated more often (the distortion does not depend on the payload length, which is why AMUSE cannot
lower it here). Soft output: each carrier scores -cos(2 pi (c - dither) / step), averaged over a bit's
carriers.

Changed from invisible-watermark's `dwtDct` (which, despite the name, applies no DCT and marks chroma only, so
4:2:0 JPEG erases it): a real DCT, luminance, soft scores, and no 256x256 minimum size.
"""

from __future__ import annotations

import functools

import numpy as np
import pywt

from watermark.backends.base import check_fits

_BLOCK = 8  # pixels per block side (4x4 LL coefficients)
_CARRIERS = ((0, 1), (1, 0))
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _dct4() -> np.ndarray:
    k = np.arange(4)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 8) * np.sqrt(2 / 4)
    m[0] /= np.sqrt(2)
    return m


_D = _dct4()
_PATTERNS = np.stack([np.outer(_D[i], _D[j]) for i, j in _CARRIERS]).astype(np.float32)  # DCT basis images


class DwtDctBackend:
    """QIM in the DCT of the Haar-LL band of luminance; `strength` is the quantisation step (larger = more
    robust,
    lower PSNR; 40 gives about 42 dB)."""

    name = "dwtdct"
    default_strength = 40.0
    strength_range = (6.0, 100.0)  # 6: about 58 dB, the benchmark's weakest; below 4 rounding erases the mark

    def capacity(self, height: int, width: int) -> int:
        return (height // _BLOCK) * (width // _BLOCK) * len(_CARRIERS)

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _layout(n_carriers: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Which payload bit each carrier holds (interleaved cyclic tiling) and its dither, both fixed."""
        rng = np.random.default_rng(n_carriers)
        order = rng.permutation(n_carriers)
        bit_of = np.empty(n_carriers, dtype=np.int64)
        bit_of[order] = np.arange(n_carriers) % n
        return bit_of, rng.random(n_carriers)

    @staticmethod
    def _carriers(image: np.ndarray) -> tuple[np.ndarray, int, int]:
        """Luminance -> Haar LL (PyWavelets) -> the carrier coefficients of every 4x4 DCT block, (blocks, 2)."""
        h, w = (image.shape[0] // _BLOCK) * _BLOCK, (image.shape[1] // _BLOCK) * _BLOCK
        pixels = image[:h, :w].astype(np.float32)
        luma = pixels @ _LUMA if image.shape[2] == 3 else pixels[:, :, 0]
        ll = pywt.dwt2(luma, "haar")[0]
        blocks = ll.reshape(h // _BLOCK, 4, w // _BLOCK, 4)
        return np.einsum("aibj,cij->abc", blocks, _PATTERNS).reshape(-1), h, w

    def embed(self, image: np.ndarray, bits: np.ndarray, strength: float) -> np.ndarray:
        bits = np.asarray(bits, dtype=np.int64)
        check_fits(self, image, len(bits))
        values, h, w = self._carriers(image)
        bit_of, dither = self._layout(values.size, len(bits))
        offset = (dither + bits[bit_of] / 2) * strength
        change = strength * np.round((values - offset) / strength) + offset - values
        # Only two DCT coefficients per block move, so the inverse DCT + inverse Haar of the change is closed
        # form: each carrier's 4x4 basis pattern in LL, and each LL coefficient spreads as 1/2 over 2x2 pixels.
        change = change.reshape(h // _BLOCK, w // _BLOCK, len(_CARRIERS)).astype(np.float32)
        d_ll = np.einsum("abc,cij->aibj", change, _PATTERNS).reshape(h // 2, w // 2)
        delta = np.round(np.repeat(np.repeat(d_ll / 2, 2, axis=0), 2, axis=1)).astype(np.int16)
        out = image.astype(np.int16)
        out[:h, :w] += delta[:, :, None]
        return np.clip(out, 0, 255).astype(np.uint8)

    def extract(self, image: np.ndarray, n: int, strength: float | None = None) -> np.ndarray:
        check_fits(self, image, n)
        values = self._carriers(image)[0].astype(np.float64)
        bit_of, dither = self._layout(values.size, n)
        step = strength or self.default_strength
        per_carrier = -np.cos(2 * np.pi * (values / step - dither))
        return np.bincount(bit_of, weights=per_carrier, minlength=n) / np.bincount(bit_of, minlength=n)
