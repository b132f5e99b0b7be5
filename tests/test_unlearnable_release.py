"""Mixing, the clean-only baseline and the re-encodings used by the evaluation harness."""

import numpy as np

from unlearnable.release import clean_only, grayscale, jpeg, mix, protected_indices
from unlearnable.victim import Recipe, train_victim


def test_mix_replaces_exactly_p_and_clean_only_is_the_rest():
    clean = np.zeros((100, 4, 4, 3), np.uint8)
    prot = np.ones_like(clean)
    mixed = mix(clean, prot, 0.3, seed=1)
    replaced = mixed.reshape(100, -1).max(1) == 1
    assert replaced.sum() == 30
    assert np.array_equal(np.flatnonzero(replaced), protected_indices(100, 0.3, seed=1))
    x, y = clean_only(clean, np.arange(100), 0.3, seed=1)
    assert len(x) == 70 and not set(y) & set(np.flatnonzero(replaced))


def test_jpeg_and_grayscale_keep_shape_and_dtype():
    x = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    j, g = jpeg(x, 75), grayscale(x)
    assert j.shape == x.shape and j.dtype == np.uint8 and not np.array_equal(j, x)
    assert g.shape == x.shape and np.array_equal(g[..., 0], g[..., 2])


def test_victim_learns_an_easy_task():
    rng = np.random.default_rng(0)
    y = np.arange(160) % 2
    x = np.where(y[:, None, None, None] == 1, 200, 40).astype(np.uint8) * np.ones((160, 8, 8, 3), np.uint8)
    x = np.clip(x + rng.integers(-20, 20, x.shape), 0, 255).astype(np.uint8)
    res = train_victim(x, y, x, y, recipe=Recipe(width=8, epochs=6, batch_size=32, augment=False, lr=0.02))
    assert res.test_acc > 0.9
