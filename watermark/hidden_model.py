"""A small HiDDeN-style encoder/decoder (Zhu et al., "HiDDeN: Hiding Data With Deep Networks", ECCV 2018).

AMUSE (arXiv 2403.05628) reports its gains with HiDDeN because a learned watermarker's error rate grows with
the payload it was trained for: one model per payload length. This is our own CPU-sized version, not the
authors' code:

- the networks work at a fixed `resolution` (32x32 by default); a larger image is area-downsampled, the
  residual is computed there and upsampled (bilinear) back onto the full-resolution image, so one model serves
  every size and the mark lives in low frequencies that survive JPEG and resizing;
- the residual is `tanh`-bounded and scaled by `residual_scale * strength`, so the inference strength sweeps
  the PSNR/robustness trade-off without retraining;
- saved as a folder (`config.json` + `model.safetensors`) with `save_pretrained` / `from_pretrained`.

Training (noise layers, losses) lives in `watermark.train_hidden`, which inference never imports.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from protect.errors import ConfigError, IntegrityError, one_line
from protect.paths import atomic_path, atomic_write_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MESSAGE_PLANES = 4


@dataclass
class HiddenConfig:
    """Architecture of one HiDDeN model; `payload_bits` is fixed at training time."""

    payload_bits: int = 30
    resolution: int = 32
    channels: int = 16
    encoder_blocks: int = 2
    decoder_blocks: int = 3
    residual_scale: float = 0.04

    def __post_init__(self) -> None:
        if self.payload_bits < 1 or self.resolution < 8 or self.channels < 1:
            raise ConfigError(f"invalid HiDDeN config {asdict(self)}")


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class HiddenEncoder(nn.Module):
    """Image + message -> residual in [-1, 1]: conv image features concatenated with a message map.

    HiDDeN broadcasts each bit as a constant plane; like later HiDDeN variants we project the message to a
    low-resolution map (linear layer, upsampled), which gives the carriers spatial structure and trains far
    faster.
    """

    def __init__(self, cfg: HiddenConfig) -> None:
        super().__init__()
        c, g = cfg.channels, cfg.resolution // 4
        self.grid = g
        self.message = nn.Linear(cfg.payload_bits, MESSAGE_PLANES * g * g)
        self.features = nn.Sequential(_block(3, c), *[_block(c, c) for _ in range(cfg.encoder_blocks - 1)])
        self.merge = _block(c + MESSAGE_PLANES + 3, c)
        self.out = nn.Conv2d(c, 3, 1)

    def forward(self, x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        m = self.message(2 * bits - 1).view(-1, MESSAGE_PLANES, self.grid, self.grid)
        m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
        h = torch.cat([self.features(2 * x - 1), m, 2 * x - 1], dim=1)
        return torch.tanh(self.out(self.merge(h)))


class HiddenDecoder(nn.Module):
    """Image -> one logit per payload bit (conv blocks down to a quarter resolution, then linear)."""

    def __init__(self, cfg: HiddenConfig) -> None:
        super().__init__()
        c, g = cfg.channels, cfg.resolution // 4
        layers = [_block(3, c), _block(c, c, stride=2), _block(c, c, stride=2)]
        layers += [_block(c, c) for _ in range(cfg.decoder_blocks - 3)]
        self.features = nn.Sequential(*layers, nn.Conv2d(c, MESSAGE_PLANES, 1))
        self.linear = nn.Linear(MESSAGE_PLANES * g * g, cfg.payload_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(2 * x - 1).flatten(1))


class HiddenModel(nn.Module):
    """Encoder + decoder with full-resolution embedding and extraction (inputs are float images in [0, 1])."""

    def __init__(self, cfg: HiddenConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = HiddenEncoder(cfg)
        self.decoder = HiddenDecoder(cfg)

    def to_model_size(self, x: torch.Tensor) -> torch.Tensor:
        r = self.config.resolution
        if x.shape[-2:] == (r, r):
            return x
        return F.interpolate(x, size=(r, r), mode="area")

    def residual(self, x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """The watermark residual at the image's own size, for strength 1 (pixel units in [0, 1])."""
        small = self.to_model_size(x)
        res = self.encoder(small, bits) * self.config.residual_scale
        if res.shape[-2:] != x.shape[-2:]:
            res = F.interpolate(res, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return res

    def embed(self, x: torch.Tensor, bits: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        return (x + strength * self.residual(x, bits)).clamp(0, 1)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, one per payload bit (positive means 1)."""
        return self.decoder(self.to_model_size(x))

    # -- folders ----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / CONFIG_NAME, json.dumps(asdict(self.config), indent=2) + "\n")
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(d / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> HiddenModel:
        d = Path(directory)
        try:
            cfg = HiddenConfig(**json.loads((d / CONFIG_NAME).read_text(encoding="utf-8")))
            state = load_file(str(d / WEIGHTS_NAME))
        except FileNotFoundError as e:
            raise ConfigError(
                f"{d} is not a HiDDeN model folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})"
            ) from e
        except (json.JSONDecodeError, TypeError, OSError) as e:
            raise IntegrityError(f"cannot read HiDDeN model in {d}: {e}") from e
        model = cls(cfg)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise IntegrityError(f"weights in {d} do not match its config: {one_line(e)}") from e
        return model.eval()
