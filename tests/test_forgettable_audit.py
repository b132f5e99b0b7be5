"""Audit building blocks: bootstrap AUCs, MIA statistics that exist only where a model has an output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from forgettable.audit import (
    accuracy,
    auc_with_ci,
    check_audit_data,
    logit_margin,
    membership_auc,
    view_logits,
)
from forgettable.config import ForgettableConfig
from forgettable.data import LabeledImages
from forgettable.model import PreForgettableModel
from protect.errors import ConfigError


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


def test_logit_margin_is_the_log_odds_and_does_not_saturate():
    logits = np.array([[2.0, 0.0, -1.0], [30.0, 0.0, 0.0], [40.0, 0.0, 0.0], [0.0, -np.inf, 1.0]], np.float32)
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    margins = logit_margin(logits, np.array([0, 0, 0, 2]))
    assert margins[0] == pytest.approx(np.log(p[0] / (1 - p[0])))
    probs = torch.softmax(torch.from_numpy(logits[1:3]), -1)[:, 0]
    assert probs[0] == probs[1] == 1.0 and margins[2] > margins[1]  # p ties at 1.0 in float32; margins do not
    assert margins[3] == pytest.approx(1.0)  # a -inf (deleted tied-head) logit adds no mass


def test_mia_loss_statistic_needs_an_output_for_the_class():
    torch.manual_seed(0)
    cfg = ForgettableConfig(
        ["a", "b"], backbone="tiny-vit-8", image_size=8, channels=1, patch_size=2, dim=32, depth=2, heads=2
    )
    oracle = PreForgettableModel(cfg).eval()  # knows a and b only
    rng = np.random.default_rng(0)
    data = LabeledImages(rng.integers(0, 255, (40, 8, 8, 1), dtype=np.uint8), np.full(40, 2), ["a", "b", "c"])
    members, nonmembers = data.take(np.arange(20)), data.take(np.arange(20, 40))
    results = membership_auc(oracle, members, nonmembers)
    assert "loss" not in results  # no output for class c: the loss attack is undefined
    result = results["confidence"]
    assert result.n_members == result.n_nonmembers == 20
    assert result.ci_low <= result.auc <= result.ci_high
    assert accuracy(oracle, data) == 0.0  # no output for class c: never right
    only_a = LabeledImages(data.x, np.zeros(40, np.int64), ["a", "b", "c"])
    assert accuracy(oracle, only_a, among=["a"]) == 1.0  # the argmax restricted to one class
    assert accuracy(oracle, only_a, among=["b"]) == 0.0


def test_view_logits_query_the_training_augmentations():
    torch.manual_seed(0)
    cfg = ForgettableConfig(
        ["a", "b"], backbone="tiny-vit-8", image_size=8, channels=1, patch_size=2, dim=32, depth=2, heads=2
    )
    model = PreForgettableModel(cfg).eval()
    images = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 1), dtype=np.uint8)
    plain = view_logits(model, images)
    assert plain.shape == (1, 5, 2) and np.allclose(plain[0], model.predict_logits(images), atol=1e-6)
    model.recipe = {"shift": 1, "hflip": True}
    views = view_logits(model, images)
    assert views.shape == (18, 5, 2)  # 3 x 3 shifts, each also mirrored
    assert any(np.allclose(v, plain[0], atol=1e-6) for v in views)  # the unshifted view is one of them
    flipped = model.predict_logits(images[:, :, ::-1].copy())
    assert any(np.allclose(v, flipped, atol=1e-5) for v in views)


def test_calibrated_mia_finds_memorised_members_and_is_null_against_itself():
    torch.manual_seed(0)
    cfg = ForgettableConfig(
        ["a", "b"], backbone="tiny-vit-8", image_size=8, channels=1, patch_size=2, dim=32, depth=2, heads=2
    )
    reference = PreForgettableModel(cfg).eval()
    rng = np.random.default_rng(0)
    data = LabeledImages(rng.integers(0, 255, (48, 8, 8, 1), dtype=np.uint8), np.tile([0, 1], 24), ["a", "b"])
    members, nonmembers = data.take(np.arange(24)), data.take(np.arange(24, 48))
    same = membership_auc(reference, members, nonmembers, reference=reference)["calibrated"]
    assert same.auc == 0.5  # a model calibrated by itself scores every sample 0
    model = PreForgettableModel(cfg)
    model.load_state_dict(reference.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = model.preprocess(members.x), torch.as_tensor(members.y)
    for _ in range(60):  # memorise 24 random images
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    found = membership_auc(model, members, nonmembers, reference=reference)["calibrated"]
    assert found.ci_low > 0.5 and found.n_members == 24
    assert "calibrated" not in membership_auc(model, members, nonmembers)  # needs a reference


def test_audit_data_needs_enough_images_of_every_class():
    def images(per_class):
        y = np.repeat(np.arange(len(per_class)), per_class)
        return LabeledImages(np.zeros((len(y), 4, 4, 1), np.uint8), y, ["a", "b", "c"])

    check_audit_data(images([5, 5, 5]), images([4, 4, 4]), "b")
    with pytest.raises(ConfigError, match=r"at least 4 held-out images of every class; too few: c \(0\)"):
        check_audit_data(images([5, 5, 5]), images([4, 4, 0]), "b")
    with pytest.raises(ConfigError, match=r"at least 2 training images .* b \(1\)"):
        check_audit_data(images([5, 1, 5]), images([4, 4, 4]), "b")
