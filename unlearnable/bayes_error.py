"""A differentiable estimate of the Bayes error of a labelled sample (Zhang et al. 2025, arXiv 2511.08191).

The estimator is the leave-one-out Nadaraya-Watson posterior with a Gaussian kernel, as in the authors' `bayeslap`
package:

    K_ij = exp(-||z_i - z_j||^2 / 2 sigma^2),  K_ii = 0
    p(c | z_i) = sum_j K_ij [y_j = c] / sum_j K_ij
    beta = mean_i (1 - max_c p(c | z_i))

Its gradient is analytic, with the arg-max class held fixed (a subgradient, as in `bayeslap`). With
A_ij = K_ij (M_ij Z_i - N_i) / Z_i^2, M_ij = [y_j = argmax_i], Z_i = sum_j K_ij, N_i = sum_j K_ij M_ij:

    d beta / d z = [diag(A 1 + A^T 1) z - (A + A^T) z] / (N sigma^2)

What we changed: `bayeslap` builds a (chunk, N, D) difference tensor and returns the gradient of the *sum*; here both the
value and the gradient are computed in row chunks of the N x N kernel (memory O(chunk x N), never O(N^2 D)) and the
gradient is that of the mean. Each row is shifted by its smallest distance before `exp`, which leaves the posterior
(and A) unchanged but keeps far-apart points from underflowing to 0/0.
"""

from __future__ import annotations

import torch


def _kernel_rows(
    z_rows: torch.Tensor,
    z: torch.Tensor,
    rows: torch.Tensor,
    sigma: float,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Kernel rows K[rows, :], diagonal (and columns not `allowed`) zeroed, each row rescaled by a positive constant
    (posterior-invariant)."""
    d2 = (z_rows.pow(2).sum(1, keepdim=True) + z.pow(2).sum(1) - 2 * z_rows @ z.T).clamp_min_(0)
    d2[torch.arange(len(rows), device=z.device), rows] = float("inf")
    if allowed is not None:
        d2.masked_fill_(~allowed, float("inf"))
    low = d2.min(1, keepdim=True).values
    return torch.exp(-(d2 - low.masked_fill_(low.isinf(), 0)) / (2 * sigma**2))


def _nonzero(total: torch.Tensor) -> torch.Tensor:
    return torch.where(total > 0, total, torch.ones_like(total))


def _allowed(y_rows: torch.Tensor, y: torch.Tensor, partner: torch.Tensor | None) -> torch.Tensor | None:
    """With a `partner` class per class, row i only sees samples of its own class and of its partner's."""
    if partner is None:
        return None
    return (y.unsqueeze(0) == y_rows.unsqueeze(1)) | (y.unsqueeze(0) == partner[y_rows].unsqueeze(1))


def _chunks(n: int, chunk: int, device: torch.device):
    for start in range(0, n, chunk):
        yield torch.arange(start, min(start + chunk, n), device=device)


def posterior(
    z: torch.Tensor,
    y: torch.Tensor,
    *,
    sigma: float,
    num_classes: int,
    chunk: int = 1024,
    partner: torch.Tensor | None = None,
) -> torch.Tensor:
    """Leave-one-out kernel posterior p(c | z_i), shape (N, C); no gradient.

    A row with no neighbour it may see (possible only with `partner`) keeps its own class: no confusion, no gradient.
    """
    z = z.detach()
    onehot = torch.nn.functional.one_hot(y, num_classes).to(z.dtype)
    out = []
    for rows in _chunks(len(z), chunk, z.device):
        k = _kernel_rows(z[rows], z, rows, sigma, _allowed(y[rows], y, partner))
        total = k.sum(1, keepdim=True)
        out.append(torch.where(total > 0, (k @ onehot) / _nonzero(total), onehot[rows]))
    return torch.cat(out)


class _BayesErrorRBF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, y, sigma: float, num_classes: int, chunk: int, partner: torch.Tensor | None):
        post = posterior(z, y, sigma=sigma, num_classes=num_classes, chunk=chunk, partner=partner)
        ctx.save_for_backward(z.detach(), y, post.argmax(1))
        ctx.sigma, ctx.chunk, ctx.partner = sigma, chunk, partner
        return (1 - post.max(1).values).mean()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        z, y, yhat = ctx.saved_tensors
        n = len(z)
        row_sum = torch.zeros(n, dtype=z.dtype, device=z.device)
        col_sum = torch.zeros(n, dtype=z.dtype, device=z.device)
        a_z = torch.zeros_like(z)
        at_z = torch.zeros_like(z)
        for rows in _chunks(n, ctx.chunk, z.device):
            k = _kernel_rows(z[rows], z, rows, ctx.sigma, _allowed(y[rows], y, ctx.partner))
            m = (y.unsqueeze(0) == yhat[rows].unsqueeze(1)).to(z.dtype)
            zsum = _nonzero(k.sum(1, keepdim=True))  # an empty row has k = 0, so a = 0
            nsum = (k * m).sum(1, keepdim=True)
            a = k * (m * zsum - nsum) / zsum.pow(2)
            row_sum[rows] = a.sum(1)
            col_sum += a.sum(0)
            a_z[rows] = a @ z
            at_z += a.T @ z[rows]
        grad = ((row_sum + col_sum).unsqueeze(1) * z - a_z - at_z) / (n * ctx.sigma**2)
        return grad_out * grad, None, None, None, None, None


def bayes_error(
    z: torch.Tensor,
    y: torch.Tensor,
    *,
    sigma: float,
    num_classes: int | None = None,
    chunk: int = 1024,
    partner: torch.Tensor | None = None,
) -> torch.Tensor:
    """Kernel estimate of the Bayes error of features `z` (N, D) with integer labels `y` (N,); differentiable in z.

    With `partner` (one class index per class), the estimate is that of the pairwise problems "class c vs its partner":
    each sample's posterior is taken over its own class and its partner's only. Raising it moves every class into one
    other class's region instead of spreading it over all of them (see `beo.py`).

    Example:
        >>> z = torch.randn(100, 8, requires_grad=True); y = torch.randint(0, 3, (100,))
        >>> bayes_error(z, y, sigma=1.0).backward()
    """
    if z.ndim != 2 or y.shape != (len(z),):
        raise ValueError(f"expected z (N, D) and y (N,), got {tuple(z.shape)} and {tuple(y.shape)}")
    if len(z) < 2:
        raise ValueError("the Bayes error estimate needs at least two samples")
    classes = int(num_classes if num_classes is not None else int(y.max()) + 1)
    if partner is not None and partner.shape != (classes,):
        raise ValueError(f"partner needs one class per class ({classes}), got shape {tuple(partner.shape)}")
    return _BayesErrorRBF.apply(z, y.long(), float(sigma), classes, int(chunk), partner)


def median_sigma(z: torch.Tensor, *, scale: float = 0.5, max_points: int = 2048) -> float:
    """Kernel width from the median heuristic: `scale` x the median pairwise distance (on a subsample)."""
    z = z.detach()[:max_points]
    d = torch.cdist(z, z)
    off = d[~torch.eye(len(z), dtype=torch.bool, device=z.device)]
    return float(scale * off.median().clamp_min(1e-6))


SIGMA_GRID = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)


def loo_sigma(
    z: torch.Tensor, y: torch.Tensor, *, num_classes: int, grid: tuple[float, ...] = SIGMA_GRID
) -> float:
    """Kernel width by leave-one-out likelihood: the multiple of the median distance whose posterior best predicts y.

    A fixed width (the authors' 0.3) or the median heuristic can leave the posterior nearly uniform in a
    high-dimensional feature space, so the estimate sits near chance whatever the perturbation does; the width that
    makes the kernel a good leave-one-out classifier of the current features keeps it an estimate of their error.
    """
    base = median_sigma(z, scale=1.0)
    z, y = z.detach(), y.long()

    def nll(sigma: float) -> float:
        post = posterior(z, y, sigma=sigma, num_classes=num_classes)
        return float(-post.gather(1, y[:, None]).clamp_min(1e-6).log().mean())

    return min((base * g for g in grid), key=nll)
