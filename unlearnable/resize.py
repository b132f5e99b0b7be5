"""The surrogate's low-resolution view of a full-resolution photo, as two small matrices.

An antialiased bilinear resize is linear and separable, so resizing an (H, W) image to (s, s) is `R_h @ image @ R_w.T`
with R_h of shape (s, H) and R_w of shape (s, W). Holding the resize as matrices (built once per photo size from
torch's own `interpolate`, so the weights are exactly torch's) gives the view and its adjoint as two matrix products:
the gradient of a loss on the small view with respect to the full-resolution pixels is `R_h.T @ grad @ R_w`, computed
without autograd keeping a full-resolution graph alive. Because the perturbation bank keeps every pixel in [0, 255],
the view of `x + delta` is the view of `x` plus the view of `delta`, so the originals are resized once.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F


def resize_matrix(
    n_in: int, n_out: int, *, chunk: int = 1024, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The (n_out, n_in) matrix of torch's antialiased bilinear resize along one axis (align_corners=False).

    Built by resizing rows of the identity (as 1-pixel-high images: torch 2.14's antialiased kernel mis-handles
    1-pixel-wide ones) in chunks, so memory stays O(chunk x n_in).
    """
    cols = []
    for start in range(0, n_in, chunk):
        stop = min(start + chunk, n_in)
        eye = torch.zeros((stop - start, 1, 1, n_in), device=device)
        eye[torch.arange(stop - start), 0, 0, torch.arange(start, stop)] = 1
        out = F.interpolate(eye, size=(1, n_out), mode="bilinear", antialias=True, align_corners=False)
        cols.append(out.view(stop - start, n_out))
    return torch.cat(cols).T.contiguous()


BLOCK_PIXELS = 2**20  # full-resolution pixels per row block: the most any float temporary holds


class Resize:
    """Resize (..., H, W) images to (..., size, size) and back-project gradients; identity when already that size.

    The full-resolution side is handled a block of rows at a time (`levels`, `adjoint_blocks`): a float copy of a
    100-megapixel photo is 1.2 GB, a block is 4 MB per channel.
    """

    def __init__(self, height: int, width: int, size: int, *, device: torch.device | str = "cpu") -> None:
        self.identity = (height, width) == (size, size)
        self.height, self.block_rows = height, max(1, BLOCK_PIXELS // width)
        if not self.identity:
            self.rh = resize_matrix(height, size, device=device)
            self.rw_t = resize_matrix(width, size, device=device).T.contiguous()

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """The low-resolution view (differentiable; float input)."""
        return img if self.identity else self.rh @ (img @ self.rw_t)

    def levels(self, levels: torch.Tensor) -> torch.Tensor:
        """The view of integer images, each block of rows converted to float only while it is resized."""
        if self.identity:
            return levels.float()
        return self.rh @ torch.cat(
            [levels[..., rows, :].float() @ self.rw_t for rows in self._blocks()], dim=-2
        )

    def adjoint(self, grad: torch.Tensor) -> torch.Tensor:
        """Gradient on the full-resolution pixels from a gradient on the view."""
        return torch.cat([block for _, block in self.adjoint_blocks(grad)], dim=-2)

    def adjoint_blocks(self, grad: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
        """`adjoint(grad)` as (rows, that block of rows of it): a caller that needs a function of it (its sign)
        never holds the whole."""
        if self.identity:
            yield slice(None), grad
            return
        left = self.rh.T @ grad  # (..., H, size): small
        for rows in self._blocks():
            yield rows, left[..., rows, :] @ self.rw_t.T

    def _blocks(self) -> Iterator[slice]:
        for top in range(0, self.height, self.block_rows):
            yield slice(top, min(top + self.block_rows, self.height))
