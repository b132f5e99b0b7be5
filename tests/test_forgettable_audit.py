"""Audit building blocks: bootstrap AUCs, MIA statistics that exist only where a model has an output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from forgettable.audit import accuracy, auc_with_ci, membership_auc
from forgettable.config import ForgettableConfig
from forgettable.data import LabeledImages
from forgettable.model import PreForgettableModel


def test_auc_with_ci_separates_signal_from_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat([True, False], 50)
    auc, low, high = auc_with_ci(labels, labels.astype(float), rng=rng)
    assert (auc, low, high) == (1.0, 1.0, 1.0)
    auc, low, high = auc_with_ci(labels, rng.normal(size=100), rng=rng)
    assert low < 0.5 < high and low < auc < high


def test_auc_with_ci_equals_sklearn_on_every_resample():
    rng = np.random.default_rng(1)
    labels = rng.random(70) < 0.3
    scores = np.round(rng.normal(labels * 0.5, 1.0), 1)  # rounded: ties count one half
    auc, low, high = auc_with_ci(labels, scores, rng=np.random.default_rng(5), bootstrap=50)
    assert auc == pytest.approx(roc_auc_score(labels, scores))
    replay, pos, neg = np.random.default_rng(5), np.flatnonzero(labels), np.flatnonzero(~labels)
    aucs = []
    for _ in range(50):
        idx = np.concatenate([replay.choice(pos, len(pos)), replay.choice(neg, len(neg))])
        aucs.append(roc_auc_score(labels[idx], scores[idx]))
    assert (low, high) == pytest.approx(tuple(np.percentile(aucs, [2.5, 97.5])))
    with pytest.raises(ValueError, match="positives and negatives"):
        auc_with_ci(np.ones(5, bool), scores[:5], rng=replay)


def test_mia_loss_statistic_needs_an_output_for_the_class():
    torch.manual_seed(0)
    cfg = ForgettableConfig(
        ["a", "b"], backbone="tiny-vit-8", image_size=8, channels=1, patch_size=2, dim=32, depth=2, heads=2
    )
    oracle = PreForgettableModel(cfg).eval()  # knows a and b only
    rng = np.random.default_rng(0)
    data = LabeledImages(rng.integers(0, 255, (40, 8, 8, 1), dtype=np.uint8), np.full(40, 2), ["a", "b", "c"])
    members, nonmembers = data.take(np.arange(20)), data.take(np.arange(20, 40))
    assert membership_auc(oracle, members, nonmembers, statistic="loss") is None
    result = membership_auc(oracle, members, nonmembers, statistic="confidence")
    assert result is not None and result.n_members == result.n_nonmembers == 20
    assert result.ci_low <= result.auc <= result.ci_high
    assert accuracy(oracle, data) == 0.0  # no output for class c: never right
    only_a = LabeledImages(data.x, np.zeros(40, np.int64), ["a", "b", "c"])
    assert accuracy(oracle, only_a, among=["a"]) == 1.0  # the argmax restricted to one class
    assert accuracy(oracle, only_a, among=["b"]) == 0.0
