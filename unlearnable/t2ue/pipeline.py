"""Zero-contact noise generation: captions (and a seed) in, perturbations out. No image ever enters this module.

T2UE (arXiv 2508.03091, §3.2 "Zero-Contact"): delta_i = G(emb(T_i), z_i). A generator folder holds the generator
(`config.json` + `model.safetensors`) and the surrogate's text side: a locally trained CLIP in `surrogate/`, or the
name and tag of an open_clip model. `generate_noise` is the public entry point; `protect t2ue noise` and
`protect images --method t2ue` call it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from protect.devices import resolve_device
from protect.errors import ConfigError, IntegrityError
from unlearnable.t2ue.generator import load_generator, read_config
from unlearnable.t2ue.surrogate import Surrogate, load_clip, load_open_clip

SURROGATE_DIR = "surrogate"
MIN_SIDE, MAX_SIDE = 8, 4096  # noise is resized to each image at apply time, so larger sizes only cost memory
MAX_NOISE_BYTES = 4 * 2**30
ZMode = Literal["index", "caption"]
CLASS_TEMPLATE = "a photo of a {}"


def load_surrogate(directory: str | Path, *, device: str | torch.device = "cpu") -> Surrogate:
    """The surrogate a generator folder was trained against (local copy, or open_clip by name from its cache)."""
    spec = read_config(directory).get("surrogate", {"source": "local"})
    if not isinstance(spec, dict):
        raise IntegrityError(f"{directory}/config.json: 'surrogate' must be an object, got {spec!r}")
    if spec.get("source") == "open_clip":
        if not isinstance(spec.get("model"), str):
            raise IntegrityError(f"{directory}/config.json: the open_clip surrogate has no 'model' name")
        return load_open_clip(spec["model"], spec.get("pretrained"), device=device).freeze()
    return load_clip(Path(directory) / SURROGATE_DIR, device=device).freeze()


def z_for(seed: int, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A standard-normal z determined by (seed, key) alone, so noise never depends on batching or order."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randn(shape, generator=gen)


class NoiseGenPipeline:
    """Surrogate text encoder + tokenizer + generator, composed like a diffusers pipeline (inference only).

    Example:
        pipe = NoiseGenPipeline.from_pretrained("gen/")
        deltas = pipe(["a small red circle in the top left on a gray background"], size=(32, 32), seed=0)
    """

    def __init__(self, surrogate: Surrogate, generator: torch.nn.Module) -> None:
        self.surrogate = surrogate
        self.generator = generator.eval()
        self.eps = float(generator.config.eps)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, device: str | torch.device = "cpu"
    ) -> NoiseGenPipeline:
        device = resolve_device(device) if isinstance(device, str) else device
        return cls(load_surrogate(directory, device=device), load_generator(directory).to(device))

    @torch.no_grad()
    def __call__(
        self,
        captions: Sequence[str],
        *,
        size: tuple[int, int] | None = None,
        seed: int = 0,
        z_mode: ZMode = "index",
        batch_size: int = 512,
    ) -> np.ndarray:
        """Float32 deltas (N, H, W, 3) in [-eps, eps] for `captions`, in [0, 1] pixel units.

        `z_mode="index"` draws z from (seed, position): sample-wise noise. `z_mode="caption"` draws it from (seed,
        caption text), so equal captions get equal noise: the paper's class-wise mode (fixed z per class prompt).
        """
        captions = check_captions(captions)
        if z_mode not in ("index", "caption"):
            raise ConfigError(f"z_mode must be 'index' or 'caption', got {z_mode!r}")
        device = self.surrogate.device
        native = self.generator.config.image_size
        h, w = parse_size(size or (native, native))
        check_noise_memory(len(captions), h, w)
        out = np.empty((len(captions), h, w, 3), dtype=np.float32)
        for start in range(0, len(captions), batch_size):
            chunk = captions[start : start + batch_size]
            # 1. encode the captions with the frozen surrogate's text tower
            tokens = self.surrogate.tokenize(chunk)
            emb = self.surrogate.encode_text(tokens)
            states, mask = (
                self.surrogate.token_states(tokens) if self.generator.config.arch == "unet" else (None, None)
            )
            # 2. one z per caption, fixed by the seed and the position (or the caption text)
            keys = [c if z_mode == "caption" else str(start + i) for i, c in enumerate(chunk)]
            z = torch.stack([z_for(seed, k, self.generator.z_shape) for k in keys]).to(device)
            # 3. generate at the native size; bilinear resizing is a convex combination, so |delta| <= eps still holds
            delta = self.generator(emb, z, states, mask)
            # tanh and clamp let NaN through: corrupt weights must not become noise
            if not torch.isfinite(delta).all():
                raise IntegrityError(
                    "the generator produced NaN or infinite noise; its weights are corrupt, retrain it"
                )
            if (h, w) != (native, native):
                delta = F.interpolate(delta, size=(h, w), mode="bilinear", align_corners=False)
            out[start : start + len(chunk)] = (
                delta.clamp(-self.eps, self.eps).permute(0, 2, 3, 1).cpu().numpy()
            )
        return out


def check_captions(captions: Sequence[str]) -> list[str]:
    """Captions as a list of non-empty strings (one clear error otherwise)."""
    if isinstance(captions, str):
        raise ConfigError("captions must be a list of strings, not one string")
    captions = list(captions)
    if not captions:
        raise ConfigError("no captions given")
    for i, c in enumerate(captions):
        if not isinstance(c, str) or not c.strip():
            raise ConfigError(f"caption {i} is empty; every image needs a description")
    return captions


def class_captions(class_names: Sequence[str], *, template: str = CLASS_TEMPLATE) -> list[str]:
    """The paper's class-wise prompts: one templated caption per class name ("a photo of a {class}")."""
    try:
        fits = template.format("\0").count("\0") == 1
    except (IndexError, KeyError, ValueError):  # '{} and {}', '{x}', a stray '{'
        fits = False
    if not fits:
        raise ConfigError(
            f"the template needs exactly one '{{}}' for the class name (write a literal brace as '{{{{'), "
            f"got {template!r}"
        )
    return [template.format(str(name).replace("_", " ")) for name in check_captions(class_names)]


def parse_size(size: str | tuple[int, int]) -> tuple[int, int]:
    """'HxW' (or an (H, W) pair) -> (H, W), each side in [MIN_SIDE, MAX_SIDE]."""
    if isinstance(size, str):
        try:
            h, w = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"size must look like 32x32 (HxW), got {size!r}") from None
    else:
        h, w = size
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise ConfigError(
            f"size must be {MIN_SIDE} to {MAX_SIDE} pixels per side, got {h}x{w} (noise is resized to each "
            "image when applied)"
        )
    return int(h), int(w)


def check_noise_memory(n: int, h: int, w: int) -> None:
    """Refuse a request whose float32 noise would not fit comfortably in memory, before allocating it."""
    need = n * h * w * 3 * 4
    if need > MAX_NOISE_BYTES:
        raise ConfigError(
            f"{n} perturbation(s) of {h}x{w} need {need / 2**30:.1f} GiB (limit {MAX_NOISE_BYTES / 2**30:.0f} "
            "GiB); use a smaller --size (noise is resized per image) or split the captions file"
        )


def generate_noise(
    captions: list[str],
    *,
    generator: str | Path,
    size: tuple[int, int],
    seed: int = 0,
    device: str = "cpu",
    z_mode: ZMode = "index",
) -> np.ndarray:
    """Unlearnable noise from descriptions alone: float32 (N, H, W, 3) deltas in [-eps, eps] ([0, 1] pixel units).

    There is deliberately no image parameter: the user's images never reach the generator (zero contact).

    Example:
        deltas = generate_noise(["a dog on a beach"], generator="gen/", size=(224, 224), seed=0)
    """
    return NoiseGenPipeline.from_pretrained(generator, device=device)(
        captions, size=parse_size(size), seed=seed, z_mode=z_mode
    )
