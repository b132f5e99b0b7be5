"""Device choice and seeding: one place, so every part resolves `--device auto` the same way."""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

from protect.errors import ConfigError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """Map `auto|cpu|cuda|mps` to an available `torch.device`; asking for a missing accelerator is an error."""
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
        log.info("device auto -> %s", name)
    elif name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto"
        )
    elif name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "--device mps was asked for but Apple MPS is not available; use --device cpu or auto"
        )
    return torch.device(name)


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator for `seed`; also seeds Python and numpy so library code stays reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


PRECISIONS = ("auto", "fp32", "bf16")


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix units are there: CUDA with bf16, or a CPU with AMX / AVX512-BF16 (else it is emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(
            getattr(cpu, f, lambda: False)() for f in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        )
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto` -> bf16 autocast where the hardware runs it natively (about 2x faster on such CPUs), fp32 elsewhere."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    return ("bf16" if fast_bf16(device) else "fp32") if name == "auto" else name


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Mixed precision for the network's forward pass (weights, losses and optimiser state stay fp32)."""
    return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")
