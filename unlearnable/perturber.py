"""The shape every unlearnable-example method shares (after torchattacks' `Attack`, see STYLE.md).

A `Perturber` holds keyword-only hyper-parameters and implements `perturb(bank, y)`, which edits the perturbations in a
`PerturbationBank` in place. The bank guarantees the L-infinity and [0, 255] projection after every step; methods only
choose the direction. Progress goes to a callback, never to print.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from unlearnable.bank import PerturbationBank
from unlearnable.surrogates import Surrogate

Callback = Callable[[dict[str, Any]], None]


class Perturber(abc.ABC):
    """Base class: keyword-only settings, a surrogate, and a callback for progress."""

    name = "base"

    def __init__(
        self,
        *,
        surrogate: Surrogate,
        steps: int = 20,
        step_levels: int = 1,
        batch_size: int = 512,
        seed: int = 0,
        callback: Callback | None = None,
    ) -> None:
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if step_levels < 1:
            raise ValueError(f"step_levels must be >= 1, got {step_levels}")
        self.surrogate, self.steps, self.step_levels = surrogate, steps, step_levels
        self.batch_size, self.seed = batch_size, seed
        self.callback = callback or (lambda info: None)
        self.gen = torch.Generator().manual_seed(seed)
        self.history: list[dict[str, Any]] = []

    def batches(self, n: int) -> Iterator[torch.Tensor]:
        """A fresh random partition of range(n) into mini-batches (every sample once per pass)."""
        order = torch.randperm(n, generator=self.gen)
        nb = max(1, round(n / self.batch_size))
        yield from torch.tensor_split(order, nb)

    def surrogate_input(self, views: torch.Tensor) -> torch.Tensor:
        """Views resized (differentiably, antialiased) to the surrogate's input side, if they are not already."""
        size = self.surrogate.input_size
        if views.shape[-1] == size:
            return views
        return F.interpolate(views, size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    def log(self, **info: Any) -> None:
        self.history.append(info)
        self.callback(info)

    @abc.abstractmethod
    def perturb(self, bank: PerturbationBank, y: torch.Tensor) -> list[dict[str, Any]]:
        """Optimise `bank`'s perturbations for labels `y` in place; return the per-pass history."""
