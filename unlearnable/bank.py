"""Originals and their perturbations, keyed by a stable sample id, with a differentiable low-resolution view.

Perturbations live at each image's own resolution and on the 8-bit grid: they are stored as int8 levels (1 level =
1/255) and every update moves by whole levels, so the projection onto the L-infinity ball and [0, 255] is exact and the
saved file is within eps of the original by construction (the quantisation-aware projection the BEO paper lacks; its
script saves floats). The surrogate sees `view(x + delta)`: an antialiased resize to `size` x `size`. Since every pixel
stays in [0, 255], that view is `view(x) + view(delta)` (`resize.py`): originals are resized once, and a step costs two
matrix products per photo instead of a full-resolution autograd graph. Storage is 1 byte per pixel channel for each of
x and delta, so a 12-megapixel photo costs 72 MB, not gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unlearnable.resize import Resize

PIXELS_PER_CALL = 4e6  # full-resolution pixels handled at once: keeps peak memory near one large photo


@dataclass
class Leaf:
    """The samples of one size group that a mini-batch touched, and their rows in the batch's views."""

    group: int
    local: torch.Tensor
    rows: torch.Tensor
    views: torch.Tensor


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
        self.resize: list[Resize] = []
        self.base: list[torch.Tensor | None] = []
        self.where = torch.empty((self.n, 2), dtype=torch.long)
        for g, ids in enumerate(shapes.values()):
            arr = np.stack([images[i] for i in ids])
            self.x.append(torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().to(self.device))
            self.delta.append(torch.zeros_like(self.x[-1], dtype=torch.int8))
            self.locked.append(torch.as_tensor(self.frozen[ids], device=self.device))
            self.resize.append(Resize(*arr.shape[1:3], size, device=self.device))
            self.base.append(None if self.resize[-1].identity else self._resized(g, self.x[-1]))
            self.where[ids, 0] = g
            self.where[ids, 1] = torch.arange(len(ids))

    def _per_call(self, g: int) -> int:
        return max(1, int(PIXELS_PER_CALL // max(1, self.x[g][0].numel())))

    def _resized(self, g: int, levels: torch.Tensor) -> torch.Tensor:
        """`resize` of integer images, a few at a time (each converted to float only while it is resized)."""
        step = self._per_call(g)
        return torch.cat([self.resize[g].levels(levels[i : i + step]) for i in range(0, len(levels), step)])

    @staticmethod
    def _rgb(v: torch.Tensor) -> torch.Tensor:
        return v.expand(-1, 3, -1, -1) if v.shape[1] == 1 else v

    def view(self, g: int, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """The view of uint8 images `x` of group `g` plus float perturbations `delta` (levels), differentiable in delta.

        `delta` need not respect the pixel range here (class-wise noise), so the sum is clamped before resizing.
        """
        return self._rgb(self.resize[g]((x.float() + delta).clamp(0, 255)).div(255))

    def views(self, ids: torch.Tensor, *, grad: bool = False) -> tuple[torch.Tensor, list[Leaf]]:
        """Views of `ids` (B, 3, size, size) in [0, 1], in the order of `ids`; with grad, leaves to update later."""
        out = torch.empty((len(ids), 3, self.size, self.size), device=self.device)
        groups: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        where = self.where[ids]
        for g in where[:, 0].unique().tolist():
            rows = (where[:, 0] == g).nonzero().squeeze(1).to(self.device)
            local = where[rows.cpu(), 1].to(self.device)
            d = self.delta[g][local]
            if self.resize[g].identity:
                v = self.x[g][local].float().add_(d)
            else:
                v = self._resized(g, d).add_(self.base[g][local])
            out[rows] = self._rgb(v.div_(255).clamp_(0, 1))  # float rounding of the resize weights
            groups.append((g, local, rows))
        if not grad:
            return out, []
        out.requires_grad_(True)
        return out, [Leaf(g, local, rows, out) for g, local, rows in groups]

    def all_views(self, batch: int = 1024) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat(
                [self.views(torch.arange(i, min(i + batch, self.n)))[0] for i in range(0, self.n, batch)]
            )

    def view_grad(self, leaf: Leaf, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """The loss's gradient on the views of `leaf.local[start:stop]`, per stored channel; `resize.adjoint` of
        it is the gradient on the full-resolution pixels."""
        grad = leaf.views.grad[leaf.rows[start:stop]]
        if self.x[leaf.group].shape[1] == 1:  # greyscale was expanded to RGB in the view
            grad = grad.sum(1, keepdim=True)
        return grad

    def step(self, leaves: list[Leaf], *, levels: int, direction: int) -> None:
        """Signed step of `levels` along +-grad (direction +1 ascends, -1 descends), projected exactly; the
        full-resolution gradient is formed a block of rows at a time, since only its sign is used."""
        for leaf in leaves:
            if leaf.views.grad is None:
                continue
            g, per = leaf.group, self._per_call(leaf.group)
            for i in range(0, len(leaf.local), per):
                local = leaf.local[i : i + per]
                for rows, block in self.resize[g].adjoint_blocks(self.view_grad(leaf, i, i + per)):
                    move = block.sign_().to(torch.int16).mul_(direction * levels)
                    self._project(g, local, move.add_(self.delta[g][local, :, rows]), rows)

    def _project(self, g: int, local: torch.Tensor, delta: torch.Tensor, rows: slice = slice(None)) -> None:
        """Store int16 `delta` (levels) for `local`'s `rows` after projecting onto the eps-ball and [0, 255] - x."""
        x = self.x[g][local, :, rows].to(torch.int16)
        delta.clamp_(-self.eps, self.eps)
        torch.minimum(delta, 255 - x, out=delta)
        torch.maximum(delta, x.neg_(), out=delta)
        delta[self.locked[g][local]] = 0
        self.delta[g][local, :, rows] = delta.to(torch.int8)

    def set_delta(self, i: int, delta_levels: torch.Tensor) -> None:
        g, local = self.where[i].tolist()
        index = torch.tensor([local], device=self.device)
        self._project(g, index, delta_levels.to(torch.int16).unsqueeze(0).clone())

    def protected(self, i: int) -> np.ndarray:
        """The protected uint8 image (H, W, C) of sample `i`."""
        g, local = self.where[i].tolist()
        # x + delta lies in [0, 255] (`_project`), so uint8 addition of delta's two's-complement bytes is exact
        # (x - 3 = x + 253 mod 256) and needs no int16 copies: 1 byte a value for a 100-megapixel photo, not 5
        out = self.x[g][local] + self.delta[g][local].view(torch.uint8)
        return out.permute(1, 2, 0).cpu().numpy()
