"""The perturbation bank keeps every perturbation exactly inside the 8-bit eps-ball and [0, 255]."""

import numpy as np
import torch

from unlearnable.bank import PerturbationBank


def test_steps_stay_in_the_ball_and_pixel_range_after_rounding():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for _ in range(4)]
    imgs[0][:] = 255  # saturated image: only negative changes are possible
    imgs += [rng.integers(0, 256, (20, 16, 1), dtype=np.uint8)]  # another size, greyscale
    bank = PerturbationBank(imgs, size=8, eps_levels=8, frozen=np.array([0, 0, 0, 1, 0], bool))
    for _ in range(30):
        views, leaves = bank.views(torch.arange(5), grad=True)
        assert views.shape == (5, 3, 8, 8) and 0 <= float(views.min()) and float(views.max()) <= 1
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
    grad = leaves[0].delta.grad
    assert grad.shape == (1, 3, 1500, 2000)
    assert float(grad[:, 0].abs().sum()) > 0 and float(grad[:, 1:].abs().sum()) == 0
    bank.step(leaves, levels=1, direction=+1)
    out = bank.protected(0)
    assert np.abs(out.astype(int) - 128).max() == 1
