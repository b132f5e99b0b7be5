"""Mixing, the clean-only baseline and the re-encodings used by the evaluation harness."""

import numpy as np
import pytest

from unlearnable.release import clean_only, grayscale, jpeg, mix, protected_indices, protected_part
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


def test_finetune_phase_trains_on_its_own_data():
    """Classes seen only in the fine-tuning phase are learnt; an impossible split is refused."""
    rng = np.random.default_rng(0)
    y = np.arange(480) % 4
    levels = np.array([20, 90, 160, 230], np.uint8)[y]
    x = np.clip(levels[:, None, None, None] + rng.integers(-15, 15, (480, 8, 8, 3)), 0, 255).astype(np.uint8)
    first, later = y < 2, y >= 2
    recipe = Recipe(width=8, epochs=8, finetune_epochs=4, batch_size=32, augment=False, lr=0.05)
    res = train_victim(x[first], y[first], x[later], y[later], recipe=recipe, finetune=(x[later], y[later]))
    assert res.test_acc > 0.9
    alone = train_victim(
        x[first],
        y[first],
        x[later],
        y[later],
        recipe=Recipe(width=8, epochs=6, batch_size=32, augment=False, lr=0.02),
    )
    assert alone.test_acc == 0.0
    assert alone.class_acc == {2: 0.0, 3: 0.0}  # per test label: classes it never saw
    assert res.class_acc[2] > 0.9 and res.class_acc[3] > 0.9
    # classes that only the fine-tuning set has still get an output unit
    unseen = train_victim(
        x[first], y[first], x[first], y[first], recipe=recipe, finetune=(x[later], y[later])
    )
    assert 0.0 <= unseen.train_acc <= 1.0
    with pytest.raises(ValueError, match="finetune_epochs"):
        train_victim(x, y, x, y, recipe=Recipe(width=8, epochs=2, finetune_epochs=2), finetune=(x, y))


def test_protected_part_is_what_mix_replaces():
    clean, prot = (
        np.zeros((50, 2, 2, 1), np.uint8),
        np.arange(50, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8),
    )
    xp, yp = protected_part(prot, np.arange(50), 0.4, seed=3)
    assert np.array_equal(yp, protected_indices(50, 0.4, seed=3)) and np.array_equal(xp[:, 0, 0, 0], yp)
    assert np.array_equal(mix(clean, prot, 0.4, seed=3)[yp], xp)
