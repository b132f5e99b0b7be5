"""Training the T2UE generator against a frozen CLIP surrogate (arXiv 2508.03091, §3.2, Eq. 4).

    theta_G* = argmin_theta  E_(I,T) [ InfoNCE( f_I(clamp(I + G(f_T(T), z))), f_T(T) ) ],   ||G(.)||_inf <= eps

The ordinary symmetric CLIP loss on (perturbed image, unchanged caption), minimised through delta only: the noise
becomes a shortcut that makes each image "match" its text. Only G is optimised; there is no bi-level min-min loop
and no discriminator. We follow Eq. 4 (error-minimising), not the Fig. 2 caption. Images are in [0, 1] pixel space,
delta is added and clamped there, then the surrogate normalises (as in the co-author's code).

Paper recipe: Adam(W) lr 1e-4, cosine, batch 128, 300-500 epochs on MSCOCO at 224 px. Ours is CPU-sized (32 px,
tens of epochs, lr 3e-3, generator at half resolution). One addition: after training, SSCBN's BatchNorm running statistics are re-estimated over
the training captions with the final weights, so generation in eval mode (needed for per-caption determinism)
sees the statistics the generator was trained under.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from protect.devices import resolve_device
from protect.errors import ConfigError, ProtectError
from protect.paths import swap_folder
from unlearnable.t2ue.data import load_pairs
from unlearnable.t2ue.generator import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    GeneratorConfig,
    create_generator,
    read_config,
    save_generator,
)
from unlearnable.t2ue.pipeline import SURROGATE_DIR
from unlearnable.t2ue.surrogate import (
    TINY_CLIP,
    Surrogate,
    caption_keys,
    clip_loss,
    create_clip,
    load_open_clip,
    run_epochs,
    save_clip,
    to_tensor01,
    train_clip,
)

log = logging.getLogger(__name__)


class TextBank:
    """The frozen surrogate's text features for every training caption, computed once."""

    def __init__(
        self, surrogate: Surrogate, captions: Sequence[str], *, states: bool, batch_size: int = 512
    ) -> None:
        embs, sts, masks = [], [], []
        with torch.no_grad():
            for i in range(0, len(captions), batch_size):
                tokens = surrogate.tokenize(captions[i : i + batch_size])
                embs.append(surrogate.encode_text(tokens))
                if states:
                    s, m = surrogate.token_states(tokens)
                    sts.append(s)
                    masks.append(m)
        self.emb = torch.cat(embs)
        self.states = torch.cat(sts) if states else None
        self.mask = torch.cat(masks) if states else None
        self.keys = caption_keys(captions).to(self.emb.device)

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return self.emb[idx], pick(self.states), pick(self.mask)


def protected_loss(
    surrogate: Surrogate,
    generator: torch.nn.Module,
    x01: torch.Tensor,
    bank: TextBank,
    idx: torch.Tensor,
    z: torch.Tensor | None,
) -> torch.Tensor:
    """Eq. 4 on one batch: surrogate InfoNCE of (clamp(x + G(text, z)), text); z=None means clean images."""
    emb, states, mask = bank(idx)
    x = x01[idx].to(emb.device)
    if z is not None:
        delta = generator(emb, z, states, mask)
        if delta.shape[-2:] != x.shape[-2:]:  # as at generation time: bilinear resize keeps |delta| <= eps
            delta = F.interpolate(delta, size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = (x + delta).clamp(0, 1)
    return clip_loss(surrogate.encode_image(x), emb, surrogate.logit_scale(), bank.keys[idx])


def train_generator(
    generator: torch.nn.Module,
    surrogate: Surrogate,
    x_uint8: np.ndarray,
    captions: Sequence[str],
    *,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Minimise Eq. 4 over the generator's parameters only; returns the mean training loss per epoch."""
    if len(x_uint8) != len(captions):
        raise ConfigError(f"need as many captions as images, got {len(captions)} for {len(x_uint8)}")
    surrogate.freeze()
    device = surrogate.device
    generator.to(device).train()
    gen = torch.Generator().manual_seed(seed)
    x01 = to_tensor01(x_uint8)
    bank = TextBank(surrogate, captions, states=generator.config.arch == "unet")
    opt = torch.optim.AdamW(generator.parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay)
    steps = max(1, len(captions) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)

    def step(idx: torch.Tensor) -> torch.Tensor:
        z = torch.randn((len(idx), *generator.z_shape), generator=gen).to(device)
        return protected_loss(surrogate, generator, x01, bank, idx, z)

    history = run_epochs(
        step,
        opt,
        sched,
        n=len(captions),
        batch_size=batch_size,
        epochs=epochs,
        gen=gen,
        name="generator",
        callback=callback,
    )
    recalibrate_batchnorm(generator, bank, len(captions), batch_size=batch_size, seed=seed)
    return history


@torch.no_grad()
def recalibrate_batchnorm(
    generator: torch.nn.Module, bank: TextBank, n: int, *, batch_size: int, seed: int
) -> None:
    """Re-estimate BatchNorm running stats (cumulative average over one pass) with the final weights, then eval()."""
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        generator.eval()
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    generator.train()
    gen = torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(n, generator=gen)
    for b in range(0, n, batch_size):
        idx = order[b : b + batch_size]
        z = torch.randn((len(idx), *generator.z_shape), generator=gen).to(bank.emb.device)
        emb, states, mask = bank(idx)
        generator(emb, z, states, mask)
    for m in norms:
        m.momentum = 0.1
    generator.eval()


@torch.no_grad()
def surrogate_losses(
    surrogate: Surrogate,
    generator: torch.nn.Module,
    x_uint8: np.ndarray,
    captions: Sequence[str],
    *,
    batch_size: int = 128,
    seed: int = 0,
) -> dict[str, float]:
    """Mean surrogate InfoNCE on clean and on protected pairs (generator in eval mode, as at generation time).

    Batches are drawn from a seeded shuffle, like the training batches: InfoNCE depends on what shares a batch, and
    batches in file order (e.g. only CIFAR captions, many of one class) would score a different task.
    """
    generator.eval()
    x01 = to_tensor01(x_uint8)
    bank = TextBank(surrogate, captions, states=generator.config.arch == "unet")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(captions), generator=gen)
    clean, prot = [], []
    for b in range(0, len(captions) - batch_size + 1 if len(captions) >= batch_size else 1, batch_size):
        idx = order[b : b + batch_size]
        z = torch.randn((len(idx), *generator.z_shape), generator=gen).to(bank.emb.device)
        clean.append(protected_loss(surrogate, generator, x01, bank, idx, None).item())
        prot.append(protected_loss(surrogate, generator, x01, bank, idx, z).item())
    return {"clean": float(np.mean(clean)), "protected": float(np.mean(prot))}


def train_t2ue(
    pairs: str | Path,
    out: str | Path,
    *,
    clip: str | None = None,
    pretrained: str | None = None,
    arch: str = "ssa",
    epochs: int = 30,
    clip_epochs: int = 15,
    eps: float = 8 / 255,
    image_size: int = 32,
    gen_size: int | None = None,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    device: str = "cpu",
    clip_config: dict[str, Any] | None = None,
    generator_options: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train a generator folder from image-caption pairs; returns a summary (losses, seconds).

    With `clip=None` the surrogate is the offline default: a tiny CLIP trained here on the same pairs for
    `clip_epochs`, saved in `out/surrogate/`. With `clip=NAME` (and `pretrained=TAG`) an open_clip model is used
    frozen and referenced by name. The generator works at `gen_size` (default half of `image_size`) and its output
    is upsampled bilinearly, in training as at generation time: smoother noise, 3-4x cheaper on CPU, and a lower
    surrogate loss within a CPU-length run than full resolution in our trials (the paper generates at 256 px and the
    co-author's code resizes to the target too). `clip_config` / `generator_options` override the tiny CLIP config and
    `GeneratorConfig` fields (smaller models for tests, wider ones for real use).
    """
    native = gen_size or max(8, image_size // 2)
    check_train_args(out, lr=lr, native=native, eps=eps, arch=arch)
    check_out(out, pairs, overwrite=overwrite)
    if pretrained and clip is None:
        raise ConfigError("--pretrained needs --clip MODEL")
    if clip is not None and not pretrained:
        # open_clip would build it with random weights, and `noise` would build another random one later:
        # a surrogate that knows nothing, and noise that changes from run to run
        raise ConfigError(
            f"--clip {clip} needs --pretrained TAG (e.g. openai; open_clip.list_pretrained() lists them); "
            "without --clip a tiny CLIP is trained on PAIRS"
        )
    dev = resolve_device(device)
    t0 = time.perf_counter()
    x, captions = load_pairs(pairs, size=image_size)
    if len(captions) < 2:
        raise ConfigError(f"{pairs} has {len(captions)} pair(s); contrastive training needs at least 2")
    batch_size = min(batch_size, len(captions))
    summary: dict[str, Any] = {"pairs": len(captions), "image_size": image_size}
    if clip is None:
        surrogate = create_clip(clip_config or _tiny_config(image_size), seed=seed, device=dev)
        summary["surrogate_loss_history"] = train_clip(
            surrogate, x, captions, epochs=clip_epochs, batch_size=batch_size, seed=seed
        )
    else:
        surrogate = load_open_clip(clip, pretrained, device=dev)
    surrogate.freeze()
    dims: dict[str, int] = {"text_dim": surrogate.encode_text(surrogate.tokenize(["a"])).shape[-1]}
    if arch == "unet":
        dims = {
            "text_dim": surrogate.token_states(surrogate.tokenize(["a"]))[0].shape[-1],
            "pooled_dim": dims["text_dim"],
        }
    config = GeneratorConfig(
        arch=arch,
        image_size=native,
        eps=eps,
        **{k: int(v) for k, v in dims.items()},
        **(generator_options or {}),
    )
    generator = create_generator(config, seed=seed)
    history = train_generator(
        generator, surrogate, x, captions, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed
    )
    summary.update(
        generator_loss_history=history,
        **{
            f"final_{k}_loss": v
            for k, v in surrogate_losses(surrogate, generator, x, captions, seed=seed).items()
        },
    )
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    dest = Path(os.path.realpath(out))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{secrets.token_hex(4)}"
    try:  # built beside --out and swapped in whole: a killed save never pairs one run's files with another's
        training = {
            "epochs": epochs,
            "clip_epochs": clip_epochs if clip is None else 0,
            "lr": lr,
            "batch_size": batch_size,
            "seed": seed,
            "pairs": len(captions),
            "final_clean_loss": summary["final_clean_loss"],
            "final_protected_loss": summary["final_protected_loss"],
        }
        local_clip = surrogate if clip is None else None
        _save(tmp, generator, local_clip, {"surrogate": surrogate.spec, "training": training})
        old = swap_folder(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _save(folder: Path, generator: nn.Module, local_clip: Surrogate | None, extra: dict[str, Any]) -> None:
    """Write a generator folder: the locally trained surrogate (`surrogate/`, when there is one), the generator."""
    if local_clip is not None:
        save_clip(local_clip, folder / SURROGATE_DIR)
    save_generator(generator, folder, extra=extra)


def check_train_args(out: str | Path, *, lr: float, native: int, eps: float, arch: str) -> None:
    """Refuse unusable arguments before any (minutes-long) training starts."""
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder; choose a folder for the generator")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"the learning rate must be a positive number, got {lr}")
    if native < 8 or native & (native - 1):
        raise ConfigError(
            f"the generator size must be a power of two >= 8, got {native} (the default is half of --size; "
            "pick --size 16, 32, 64, ... or set --gen-size)"
        )
    GeneratorConfig(arch=arch, image_size=native, eps=eps)  # arch and eps, with the generator's own messages


GENERATOR_FILES = {CONFIG_NAME, WEIGHTS_NAME, SURROGATE_DIR}


def check_out(out: str | Path, pairs: str | Path, *, overwrite: bool) -> None:
    """Refuse an `--out` whose replacement would destroy something: a folder that is not a generator (a model, a
    photo folder), a generator without `overwrite`, or PAIRS itself or a folder inside it."""
    dest, source = Path(os.path.realpath(out)), Path(os.path.realpath(pairs))
    if dest == source or source in dest.parents:
        raise ConfigError(f"--out {out} is or lies inside PAIRS {pairs}; choose a folder outside it")
    if not dest.is_dir() or not any(dest.iterdir()):
        return
    names = {p.name for p in dest.iterdir()}
    try:
        generator = names <= GENERATOR_FILES and "generator" in read_config(dest)
    except ProtectError:
        generator = False
    if not generator:
        raise ConfigError(f"--out {out} exists and is not a T2UE generator folder; choose a new folder")
    if not overwrite:
        raise ConfigError(f"--out {out} holds a generator; pass --overwrite to replace it")


def _tiny_config(image_size: int) -> dict[str, Any]:
    cfg = copy.deepcopy(TINY_CLIP)
    cfg["vision_cfg"]["image_size"] = image_size
    cfg["vision_cfg"]["patch_size"] = max(4, image_size // 4)
    return cfg
