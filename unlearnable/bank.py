"""Originals and their perturbations, keyed by a stable sample id, with a differentiable low-resolution view.

Perturbations live at each image's own resolution and on the 8-bit grid: they are stored as int8 levels (1 level =
1/255) and every update moves by whole levels, so the projection onto the L-infinity ball and [0, 255] is exact and the
saved file is within eps of the original by construction (the quantisation-aware projection the BEO paper lacks; its
script saves floats). The surrogate sees `view(x + delta)`: a differentiable, antialiased resize to `size` x `size`.
Storage is 1 byte per pixel channel for each of x and delta, so a 12-megapixel photo costs 72 MB, not gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Leaf:
    """The slice of one size-group that a mini-batch touched, as a float tensor that collects gradients."""

    group: int
    local: torch.Tensor
    delta: torch.Tensor


class PerturbationBank:
    """Images grouped by shape; `frozen` ids (reference anchors) are never perturbed."""

    def __init__(
        self,
        images: list[np.ndarray],
        *,
        size: int,
        eps_levels: int,
        frozen: np.ndarray | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if eps_levels < 0 or eps_levels > 127:
            raise ValueError(f"eps must be between 0 and 127 levels, got {eps_levels}")
        self.size, self.eps, self.device = size, eps_levels, torch.device(device)
        self.n = len(images)
        self.frozen = np.zeros(self.n, bool) if frozen is None else np.asarray(frozen, bool)
        shapes: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            shapes.setdefault(img.shape, []).append(i)
        self.x: list[torch.Tensor] = []
        self.delta: list[torch.Tensor] = []
        self.locked: list[torch.Tensor] = []
        self.where = torch.empty((self.n, 2), dtype=torch.long)
        for g, ids in enumerate(shapes.values()):
            arr = np.stack([images[i] for i in ids])
            self.x.append(torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().to(self.device))
            self.delta.append(torch.zeros_like(self.x[-1], dtype=torch.int8))
            self.locked.append(torch.as_tensor(self.frozen[ids], device=self.device))
            self.where[ids, 0] = g
            self.where[ids, 1] = torch.arange(len(ids))

    def view(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """The surrogate's view of uint8 images `x` plus perturbations `delta` (in levels), differentiable in delta.

        Resizing is per channel, so greyscale becomes RGB after it, on the small view.
        """
        v = (x.float() + delta).clamp_(0, 255).div_(255)
        if v.shape[-2:] != (self.size, self.size):
            v = F.interpolate(
                v, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
            )
        return v.expand(-1, 3, -1, -1) if v.shape[1] == 1 else v

    def views(self, ids: torch.Tensor, *, grad: bool = False) -> tuple[torch.Tensor, list[Leaf]]:
        """Views of `ids` (B, 3, size, size) in [0, 1], in the order of `ids`; with grad, leaves to update later."""
        out = torch.empty((len(ids), 3, self.size, self.size), device=self.device)
        leaves: list[Leaf] = []
        where = self.where[ids]
        for g in where[:, 0].unique().tolist():
            pos = (where[:, 0] == g).nonzero().squeeze(1)
            local = where[pos, 1].to(self.device)
            d = self.delta[g][local].float()
            if grad:
                d.requires_grad_(True)
                leaves.append(Leaf(g, local, d))
            # one image at a time for large photos keeps peak memory at one full-resolution image
            step = max(1, int(4e6 // max(1, self.x[g][0].numel())))
            parts = [
                self.view(self.x[g][local[i : i + step]], d[i : i + step]) for i in range(0, len(local), step)
            ]
            out[pos.to(self.device)] = torch.cat(parts)
        return out, leaves

    def all_views(self, batch: int = 1024) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat(
                [self.views(torch.arange(i, min(i + batch, self.n)))[0] for i in range(0, self.n, batch)]
            )

    def step(self, leaves: list[Leaf], *, levels: int, direction: int) -> None:
        """Signed step of `levels` along +-grad (direction +1 ascends, -1 descends), projected exactly.

        Float arithmetic on whole levels is exact here (|values| <= 255), and in-place ops keep a 12-megapixel step to
        a few passes over memory.
        """
        for leaf in leaves:
            if leaf.delta.grad is None:
                continue
            upd = leaf.delta.detach().add_(leaf.delta.grad.sign_(), alpha=direction * levels)
            x = self.x[leaf.group][leaf.local].float()
            upd.clamp_(-self.eps, self.eps)
            torch.minimum(upd, x.neg_().add_(255), out=upd)  # x + delta <= 255
            torch.maximum(upd, x.sub_(255), out=upd)  # x + delta >= 0  (x now holds -x)
            upd[self.locked[leaf.group][leaf.local]] = 0
            self.delta[leaf.group][leaf.local] = upd.to(torch.int8)

    def set_delta(self, i: int, delta_levels: torch.Tensor) -> None:
        g, local = self.where[i].tolist()
        x = self.x[g][local].to(torch.int16)
        d = torch.maximum(torch.minimum(delta_levels.to(torch.int16).clamp(-self.eps, self.eps), 255 - x), -x)
        self.delta[g][local] = d.to(torch.int8)

    def protected(self, i: int) -> np.ndarray:
        """The protected uint8 image (H, W, C) of sample `i`."""
        g, local = self.where[i].tolist()
        out = (self.x[g][local].to(torch.int16) + self.delta[g][local]).clamp(0, 255).to(torch.uint8)
        return out.permute(1, 2, 0).cpu().numpy()
