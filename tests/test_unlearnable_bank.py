"""The perturbation bank keeps every perturbation exactly inside the 8-bit eps-ball and [0, 255]."""

import numpy as np
import torch
import torch.nn.functional as F

from unlearnable.bank import PerturbationBank
from unlearnable.resize import Resize


def test_steps_stay_in_the_ball_and_pixel_range_after_rounding():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for _ in range(4)]
    imgs[0][:] = 255  # saturated image: only negative changes are possible
    imgs += [rng.integers(0, 256, (20, 16, 1), dtype=np.uint8)]  # another size, greyscale
    bank = PerturbationBank(imgs, size=8, eps_levels=8, frozen=np.array([0, 0, 0, 1, 0], bool))
    for _ in range(30):
        views, leaves = bank.views(torch.arange(5), grad=True)
        assert (
            views.shape == (5, 3, 8, 8)
            and 0 <= float(views.detach().min())
            and float(views.detach().max()) <= 1
        )
        (views * torch.randn_like(views)).sum().backward()
        bank.step(leaves, levels=3, direction=+1)
    for i, img in enumerate(imgs):
        out = bank.protected(i)
        assert out.shape == img.shape and out.dtype == np.uint8
        change = np.abs(out.astype(int) - img.astype(int))
        assert change.max() <= 8
        if i == 3:
            assert change.max() == 0  # frozen anchors never move
    assert bank.protected(0).max() <= 255 and bank.protected(0).min() >= 247


def test_view_is_differentiable_through_the_resize_of_a_large_photo():
    img = np.full((1500, 2000, 3), 128, np.uint8)
    bank = PerturbationBank([img], size=32, eps_levels=4)
    views, leaves = bank.views(torch.tensor([0]), grad=True)
    views[:, 0].sum().backward()
    grad = bank.resize[0].adjoint(bank.view_grad(leaves[0]))
    assert grad.shape == (1, 3, 1500, 2000)
    assert float(grad[:, 0].abs().sum()) > 0 and float(grad[:, 1:].abs().sum()) == 0
    bank.step(leaves, levels=1, direction=+1)
    out = bank.protected(0)
    assert np.abs(out.astype(int) - 128).max() == 1


def test_matrix_resize_is_torchs_antialiased_resize_and_its_adjoint_is_the_autograd_gradient():
    img = torch.rand(2, 3, 50, 70, dtype=torch.float64).float()
    resize = Resize(50, 70, 16)
    expected = F.interpolate(img, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(resize(img), expected, atol=1e-5)
    leaf = img.clone().requires_grad_(True)
    weight = torch.randn(2, 3, 16, 16)
    (
        F.interpolate(leaf, size=(16, 16), mode="bilinear", antialias=True, align_corners=False) * weight
    ).sum().backward()
    assert torch.allclose(resize.adjoint(weight), leaf.grad, atol=1e-5)
    assert Resize(16, 16, 16).identity and Resize(16, 16, 16)(img) is img


def test_views_of_a_resized_photo_equal_the_resize_of_the_perturbed_pixels():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    bank = PerturbationBank([img], size=8, eps_levels=8)
    bank.set_delta(0, torch.as_tensor(rng.integers(-8, 9, (3, 40, 60))))
    x = torch.from_numpy(bank.protected(0)).permute(2, 0, 1)[None].float() / 255
    expected = F.interpolate(x, size=(8, 8), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(bank.views(torch.tensor([0]))[0], expected, atol=1e-5)


def test_row_blocks_give_the_whole_image_resize_adjoint_and_steps(monkeypatch):
    import unlearnable.resize as resize_module

    rng = np.random.default_rng(2)
    imgs = [
        rng.integers(0, 256, (37, 23, 3), dtype=np.uint8),
        rng.integers(0, 256, (37, 23, 1), dtype=np.uint8),
    ]
    weight = torch.randn(2, 3, 8, 8)

    def run(block_pixels: int) -> list[np.ndarray]:
        monkeypatch.setattr(resize_module, "BLOCK_PIXELS", block_pixels)
        bank = PerturbationBank(imgs, size=8, eps_levels=6)
        for _ in range(3):
            views, leaves = bank.views(torch.arange(2), grad=True)
            (views * weight).sum().backward()
            bank.step(leaves, levels=2, direction=+1)
        return [bank.protected(i) for i in range(2)]

    whole, blocked = run(10**9), run(50)  # 50 pixels: two rows of 23 per block, the last one shorter
    assert all(np.array_equal(a, b) for a, b in zip(whole, blocked, strict=True))
    monkeypatch.setattr(resize_module, "BLOCK_PIXELS", 50)
    levels = torch.as_tensor(imgs[0]).permute(2, 0, 1)[None]
    resize = Resize(37, 23, 8)
    assert torch.allclose(resize.levels(levels), resize(levels.float()), atol=1e-4)
    grad = torch.randn(1, 3, 8, 8)
    rows = [r for r, _ in resize.adjoint_blocks(grad)]
    assert rows[0] == slice(0, 2) and rows[-1] == slice(36, 37)
    assert torch.allclose(resize.adjoint(grad), resize.rh.T @ grad @ resize.rw_t.T, atol=1e-6)
