"""Train the shipped HiDDeN models (one per payload length) on CPU-sized images.

HiDDeN (Zhu et al., ECCV 2018) trains an encoder/decoder pair end to end through a stack of noise layers so
that the message survives them. Ours: differentiable JPEG (DCT quantisation with the cubic rounding
approximation of Shin and Song, 2017, random quality, 4:2:0 chroma), random crop-and-resize, 0.5x resize and
back, Gaussian noise and brightness, one layer drawn per batch (identity included). Loss = BCE on the bits +
`image_weight` * MSE on the pixels; no discriminator (the CPU budget goes to robustness instead). Inference
code never imports this module.

Run (the models shipped in `watermark/weights/` were made with exactly this):

    python -m watermark.train_hidden --data ../shared/data/cifar10_train_10k.npz --bits 30 16 9 \
        --out watermark/weights --steps 1200
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from watermark.hidden_model import HiddenConfig, HiddenModel

log = logging.getLogger(__name__)

# Standard JPEG quantisation tables (ITU T.81 Annex K).
# fmt: off
_Q_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
           14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
           49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_Q_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
             47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32
# fmt: on


def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float32)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


_DCT = _dct_matrix()


def _quality_tables(quality: float) -> tuple[torch.Tensor, torch.Tensor]:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    tables = []
    for base in (_Q_LUMA, _Q_CHROMA):
        q = torch.clamp(torch.floor((torch.tensor(base, dtype=torch.float32) * scale + 50) / 100), 1, 255)
        tables.append(q.view(8, 8))
    return tables[0], tables[1]


def diff_jpeg(x: torch.Tensor, quality: float) -> torch.Tensor:
    """Differentiable JPEG approximation: YCbCr, 4:2:0 chroma, 8x8 DCT, quantise with cubic rounding."""
    r, g, b = x[:, 0] * 255, x[:, 1] * 255, x[:, 2] * 255
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    q_luma, q_chroma = _quality_tables(quality)

    def code(ch: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        n, h, w = ch.shape
        blocks = ch.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
        coef = _DCT @ blocks @ _DCT.T / q
        rounded = torch.round(coef)
        coef = (rounded + (coef - rounded) ** 3) * q
        return (_DCT.T @ coef @ _DCT).permute(0, 1, 3, 2, 4).reshape(n, h, w)

    def chroma(ch: torch.Tensor) -> torch.Tensor:
        small = F.avg_pool2d(ch[:, None], 2)[:, 0]
        return F.interpolate(code(small, q_chroma)[:, None], scale_factor=2, mode="nearest")[:, 0]

    y = code(y - 128, q_luma) + 128
    cb, cr = chroma(cb), chroma(cr)
    out = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1) / 255
    return out.clamp(0, 1)


def noise_layer(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One randomly drawn distortion per batch (HiDDeN's "combined" noise training)."""
    kind = rng.integers(6)
    n, _, h, w = x.shape
    if kind == 1:
        return diff_jpeg(x, float(rng.uniform(40, 95)))
    if kind == 2:  # crop 75-100% of each side, resize back
        f = rng.uniform(0.75, 1.0)
        ch, cw = max(8, int(h * f)), max(8, int(w * f))
        top, left = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
        crop = x[:, :, top : top + ch, left : left + cw]
        return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
    if kind == 3:  # resize down and back
        f = rng.uniform(0.5, 0.9)
        small = F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False, antialias=True)
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    if kind == 4:
        return (x + torch.randn_like(x) * float(rng.uniform(0, 10 / 255))).clamp(0, 1)
    if kind == 5:
        return (x + float(rng.uniform(-0.1, 0.1))).clamp(0, 1)
    return x


def train(
    images: np.ndarray,
    *,
    payload_bits: int,
    steps: int = 2500,
    batch: int = 32,
    lr: float = 3e-3,
    image_weight: float = 40.0,
    noise_after: float = 0.2,
    seed: int = 0,
    config: HiddenConfig | None = None,
) -> HiddenModel:
    """Train one model on uint8 (N, R, R, 3) images; returns it in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = config or HiddenConfig(payload_bits=payload_bits, resolution=images.shape[1])
    model = HiddenModel(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    data = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    start = time.time()
    for step in range(steps):
        idx = torch.from_numpy(rng.integers(len(data), size=batch))
        x = data[idx]
        if rng.random() < 0.5:
            x = x.flip(3)
        bits = torch.from_numpy(rng.integers(0, 2, size=(batch, cfg.payload_bits))).float()
        marked = model.embed(x, bits)
        noisy = noise_layer(marked, rng) if step >= noise_after * steps else marked
        logits = model.extract(noisy)
        bit_loss = F.binary_cross_entropy_with_logits(logits, bits)
        img_loss = F.mse_loss(marked, x)
        ramp = min(1.0, step / (0.5 * steps))  # bits first (clean, then through noise), then imperceptibility
        loss = bit_loss + ramp * image_weight * img_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            acc = ((logits > 0).float() == bits).float().mean().item()
            psnr = 10 * math.log10(1 / max(img_loss.item(), 1e-12))
            log.info(
                "bits=%d step %d loss %.3f bit_acc %.3f psnr %.1f (%.0fs)",
                cfg.payload_bits,
                step,
                loss.item(),
                acc,
                psnr,
                time.time() - start,
            )
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help=".npz with x uint8 (N, R, R, 3), e.g. the CIFAR-10 subset")
    p.add_argument("--bits", type=int, nargs="+", required=True, help="payload lengths, one model each")
    p.add_argument("--out", required=True, help="folder; each model goes to <out>/hidden-<bits>")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    images = np.load(args.data)["x"]
    for bits in args.bits:
        model = train(images, payload_bits=bits, steps=args.steps)
        model.save_pretrained(Path(args.out) / f"hidden-{bits}")


if __name__ == "__main__":
    main()
