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
