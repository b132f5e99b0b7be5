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

import numpy as np
import pywt

from watermark.backends.base import check_fits

_BLOCK = 8  # pixels per block side (4x4 LL coefficients)
_CARRIERS = ((0, 1), (1, 0))
_LUMA = np.array([0.299, 0.587, 0.114])


def _dct4() -> np.ndarray:
    k = np.arange(4)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 8) * np.sqrt(2 / 4)
    m[0] /= np.sqrt(2)
    return m


_D = _dct4()


class DwtDctBackend:
    """QIM in the DCT of the Haar-LL band of luminance; `strength` is the quantisation step (larger = more
    robust,
    lower PSNR; 40 gives about 42 dB)."""

    name = "dwtdct"
    default_strength = 40.0

    def capacity(self, height: int, width: int) -> int:
        return (height // _BLOCK) * (width // _BLOCK) * len(_CARRIERS)

    @staticmethod
    def _layout(n_carriers: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Which payload bit each carrier holds (interleaved cyclic tiling) and its dither, both fixed."""
        rng = np.random.default_rng(n_carriers)
        order = rng.permutation(n_carriers)
        bit_of = np.empty(n_carriers, dtype=np.int64)
        bit_of[order] = np.arange(n_carriers) % n
        return bit_of, rng.random(n_carriers)

    @staticmethod
    def _coefficients(luma: np.ndarray) -> tuple[np.ndarray, tuple]:
        ll, details = pywt.dwt2(luma, "haar")
        h, w = ll.shape
        blocks = ll.reshape(h // 4, 4, w // 4, 4).transpose(0, 2, 1, 3)
        return np.einsum("ij,abjk,lk->abil", _D, blocks, _D), details

    def embed(self, image: np.ndarray, bits: np.ndarray, strength: float) -> np.ndarray:
        bits = np.asarray(bits, dtype=np.int64)
        check_fits(self, image, len(bits))
        h, w = (image.shape[0] // _BLOCK) * _BLOCK, (image.shape[1] // _BLOCK) * _BLOCK
        pixels = image.astype(np.float64)
        luma = pixels[:h, :w] @ _LUMA if image.shape[2] == 3 else pixels[:h, :w, 0]
        coef, details = self._coefficients(luma)
        values = np.stack([coef[:, :, i, j] for i, j in _CARRIERS], axis=-1).reshape(-1)
        bit_of, dither = self._layout(values.size, len(bits))
        offset = (dither + bits[bit_of] / 2) * strength
        marked = strength * np.round((values - offset) / strength) + offset
        marked = marked.reshape(coef.shape[0], coef.shape[1], len(_CARRIERS))
        for c, (i, j) in enumerate(_CARRIERS):
            coef[:, :, i, j] = marked[:, :, c]
        blocks = np.einsum("ji,abjk,kl->abil", _D, coef, _D)
        ll = blocks.transpose(0, 2, 1, 3).reshape(h // 2, w // 2)
        delta = pywt.idwt2((ll, details), "haar") - luma
        out = pixels.copy()
        out[:h, :w] += delta[:, :, None]
        return np.clip(np.round(out), 0, 255).astype(np.uint8)

    def extract(self, image: np.ndarray, n: int, strength: float | None = None) -> np.ndarray:
        check_fits(self, image, n)
        h, w = (image.shape[0] // _BLOCK) * _BLOCK, (image.shape[1] // _BLOCK) * _BLOCK
        pixels = image[:h, :w].astype(np.float64)
        luma = pixels @ _LUMA if image.shape[2] == 3 else pixels[:, :, 0]
        coef, _ = self._coefficients(luma)
        values = np.stack([coef[:, :, i, j] for i, j in _CARRIERS], axis=-1).reshape(-1)
        bit_of, dither = self._layout(values.size, n)
        step = strength or self.default_strength
        per_carrier = -np.cos(2 * np.pi * (values / step - dither))
        return np.bincount(bit_of, weights=per_carrier, minlength=n) / np.bincount(bit_of, minlength=n)
