"""Error-minimising noise (EM): Huang, Ma, Erfani, Bailey, Wang, "Unlearnable Examples: Making Personal Data
Unexploitable", ICLR 2021. The baseline BEO is compared with, in the same framework and on the same 8-bit grid.

Min-min bi-level optimisation: alternately train the surrogate classifier on the perturbed data (`train_epochs`),
then descend the classification loss on the perturbations (`inner_steps` signed steps per batch), until
the surrogate's training accuracy reaches `stop_acc`. Sample-wise noise is keyed by the stable sample id (the original
code's data loader once keyed it by class label by mistake: HanxunH/Unlearnable-Examples #5, #7); class-wise noise is
one perturbation per class, shared by all of the class's images (which must then share one size).
Changed: steps are whole 8-bit levels (the paper uses 0.8/255 floats) so the released files keep the bound exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from protect.errors import ConfigError
from unlearnable.bank import PerturbationBank
from unlearnable.perturber import Perturber


class EM(Perturber):
    """Error-minimising (min-min) noise, sample-wise or class-wise."""

    name = "em"

    def __init__(
        self,
        *,
        mode: str = "sample",
        inner_steps: int = 10,
        train_epochs: int = 1,
        warmup_epochs: int = 3,
        stop_acc: float = 0.99,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("sample", "class"):
            raise ConfigError(f"EM mode must be 'sample' or 'class', got {mode!r}")
        if not self.surrogate.trainable:
            raise ConfigError("EM needs a classifier it can train: use --surrogate scratch")
        self.mode, self.inner_steps = mode, inner_steps
        self.train_epochs, self.warmup_epochs, self.stop_acc = train_epochs, warmup_epochs, stop_acc

    def _loss(self, views: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.surrogate.logits(self.surrogate_input(views)), y)

    @torch.no_grad()
    def _accuracy(self, bank: PerturbationBank, y: torch.Tensor) -> float:
        correct = 0
        for ids in torch.arange(bank.n).split(512):
            correct += int((self.surrogate.logits(bank.views(ids)[0]).argmax(1) == y[ids]).sum())
        return correct / bank.n

    def perturb(self, bank: PerturbationBank, y: torch.Tensor) -> list[dict[str, Any]]:
        if self.mode == "class" and len(bank.x) != 1:
            raise ConfigError(
                "class-wise EM needs images of one size; use sample-wise EM for mixed-size photos"
            )
        class_delta = torch.zeros((int(y.max()) + 1, *bank.x[0].shape[1:]), dtype=torch.int16)
        for t in range(self.steps):
            self.surrogate.net.requires_grad_(True)
            epochs = self.warmup_epochs if t == 0 else self.train_epochs
            self.surrogate.fit(bank.all_views(), y, epochs=epochs, gen=self.gen)
            self.surrogate.net.requires_grad_(False)
            for ids in self.batches(bank.n):
                for _ in range(self.inner_steps):
                    if self.mode == "class":
                        class_delta = self._class_step(bank, y, ids, class_delta)
                    else:
                        views, leaves = bank.views(ids, grad=True)
                        self._loss(views, y[ids]).backward()
                        bank.step(leaves, levels=self.step_levels, direction=-1)
            if self.mode == "class":
                for i in range(bank.n):
                    bank.set_delta(i, class_delta[y[i]])
            acc = self._accuracy(bank, y)
            self.log(**{"pass": t + 1, "surrogate_train_acc": round(acc, 4)})
            if acc >= self.stop_acc:
                break
        self.surrogate.net.requires_grad_(True)
        return self.history

    def _class_step(
        self, bank: PerturbationBank, y: torch.Tensor, ids: torch.Tensor, class_delta: torch.Tensor
    ) -> torch.Tensor:
        """One signed descent step on the per-class perturbations (gradients summed over the class's members)."""
        leaf = class_delta.float().requires_grad_(True)
        x = bank.x[0][bank.where[ids, 1]]
        self._loss(bank.view(0, x, leaf[y[ids]]), y[ids]).backward()
        return (class_delta - self.step_levels * leaf.grad.sign().to(torch.int16)).clamp(-bank.eps, bank.eps)
