"""Targeted adversarial poisoning (error-maximising noise): Fowl, Goldblum, Chiang, Geiping, Czaja, Goldstein,
"Adversarial Examples Make Strong Poisons", NeurIPS 2021. A baseline beside BEO and EM, in the same framework.

A surrogate is trained on the clean data, frozen, and every image of class y is pushed (signed steps on the 8-bit grid,
projected onto the eps-ball) until the surrogate reads it as class (y + 1) mod C, the paper's class-permutation target.
A victim trained on the result learns "features of class y + 1 mean y", which is wrong on clean test images.
Changed: whole 8-bit-level steps (the paper uses 250 float PGD steps of 2/255 with differentiable augmentation) and a
small surrogate trained here instead of a pretrained ResNet-18.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from protect.errors import ConfigError
from unlearnable.bank import PerturbationBank
from unlearnable.perturber import Perturber


class AdversarialPoison(Perturber):
    """Error-maximising noise towards a permuted class, against a frozen surrogate trained on the clean data."""

    name = "adv"

    def __init__(self, *, warmup_epochs: int = 15, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.surrogate.trainable:
            raise ConfigError(
                "adversarial poisoning needs a classifier it can train: use --surrogate scratch"
            )
        self.warmup_epochs = warmup_epochs

    def perturb(self, bank: PerturbationBank, y: torch.Tensor) -> list[dict[str, Any]]:
        classes = int(y.max()) + 1
        target = (y + 1) % classes
        acc = self.surrogate.fit(bank.all_views(), y, epochs=self.warmup_epochs, gen=self.gen)
        self.surrogate.net.requires_grad_(False)
        try:
            for t in range(self.steps):
                total = 0.0
                for ids in self.batches(bank.n):
                    views, leaves = bank.views(ids, grad=True)
                    loss = F.cross_entropy(self.surrogate.logits(self.surrogate_input(views)), target[ids])
                    loss.backward()
                    bank.step(leaves, levels=self.step_levels, direction=-1)
                    total += float(loss.detach()) * len(ids)
                info: dict[str, Any] = {"pass": t + 1, "target_loss": round(total / bank.n, 4)}
                if t == 0:
                    info["surrogate_train_acc"] = round(acc, 4)
                self.log(**info)
        finally:
            self.surrogate.net.requires_grad_(True)
        return self.history
