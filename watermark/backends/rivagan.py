"""Optional adapter for invisible-watermark's RivaGAN (Zhang et al., 2019): a fixed 32-bit learned watermark
whose
ONNX encoder/decoder ship inside the `invisible-watermark` wheel (offline). Install with `pip install
'protect[rivagan]'`.

We call the two ONNX sessions directly (instead of `WatermarkDecoder`) to get the decoder's logits, which the
library thresholds at 0.52 (we return tanh((logit - 0.52) / 4)), and to scale the residual by `strength`.
Shorter payloads are padded to 32 bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from protect.errors import MissingDependencyError
from watermark.backends.base import check_fits

PAYLOAD = 32
THRESHOLD = 0.52  # the library's decision threshold on the decoder's logits
MIN_SIDE = 64


def _sessions() -> tuple[Any, Any]:
    try:
        import imwatermark
        import onnxruntime
    except ImportError as e:
        raise MissingDependencyError(
            "the rivagan backend needs invisible-watermark and onnxruntime: pip install 'protect[rivagan]'"
        ) from e
    root = Path(imwatermark.__file__).parent
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    return tuple(  # type: ignore[return-value]
        onnxruntime.InferenceSession(
            str(root / f"rivagan_{part}.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        for part in ("encoder", "decoder")
    )


class RivaganBackend:
    """RivaGAN through ONNX runtime; colour images, at least 64 pixels a side."""

    name = "rivagan"
    default_strength = 1.0
    strength_range = (0.25, 1.0)  # a blend towards the encoder's output: above 1 extrapolates past it

    def __init__(self) -> None:
        self.encoder, self.decoder = _sessions()

    def capacity(self, height: int, width: int) -> int:
        return PAYLOAD if min(height, width) >= MIN_SIDE else 0

    @staticmethod
    def _frame(image: np.ndarray) -> np.ndarray:
        rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
        bgr = rgb[:, :, ::-1].astype(np.float32) / 127.5 - 1.0  # the library feeds OpenCV (BGR) frames
        return bgr.transpose(2, 0, 1)[None, :, None]

    def embed(self, image: np.ndarray, bits: np.ndarray, strength: float) -> np.ndarray:
        check_fits(self, image, len(bits))
        filler = np.random.default_rng(PAYLOAD).integers(0, 2, PAYLOAD)
        data = np.concatenate([np.asarray(bits, np.float32), filler[len(bits) :]])[None].astype(np.float32)
        frame = self._frame(image)
        out = self.encoder.run(None, {"frame": frame, "data": data})[0]
        marked = frame + strength * (np.clip(out, -1, 1) - frame)
        rgb = (
            ((marked[0, :, 0].transpose(1, 2, 0)[:, :, ::-1] + 1) * 127.5)
            .round()
            .clip(0, 255)
            .astype(np.uint8)
        )
        return rgb.mean(axis=2, keepdims=True).round().astype(np.uint8) if image.shape[2] == 1 else rgb

    def extract(self, image: np.ndarray, n: int, strength: float | None = None) -> np.ndarray:
        check_fits(self, image, n)
        logits = np.asarray(self.decoder.run(None, {"frame": self._frame(image)})[0][0], np.float64)
        return np.tanh((logits[:n] - THRESHOLD) / 4)
