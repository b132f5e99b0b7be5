"""Pre-forgettable model: training, forgetting as deletion, predictions, save/load (tiny models, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from forgettable.audit import accuracy
from forgettable.config import ForgettableConfig
from forgettable.data import LabeledImages
from forgettable.forget import forget_checkpoint
from forgettable.model import PreForgettableModel
from forgettable.train import Recipe, augment, fit, kl_to_uniform, learning_rate, prompt_sets, train_model
from protect.errors import ConfigError, UnknownNameError

NAMES = ["ring", "bar", "dot", "cross"]
TINY = {"dim": 32, "depth": 2, "heads": 2, "mlp_ratio": 2.0}


def synthetic(n_per_class: int = 60, seed: int = 0) -> LabeledImages:
    """Four easy 8x8 greyscale classes: one bright quadrant each, plus noise."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(len(NAMES)):
        img = rng.normal(40, 20, (n_per_class, 8, 8))
        r, q = divmod(c, 2)
        img[:, r * 4 : r * 4 + 4, q * 4 : q * 4 + 4] += 170
        xs.append(img)
        ys.append(np.full(n_per_class, c))
    x = np.clip(np.concatenate(xs), 0, 255).astype(np.uint8)[..., None]
    return LabeledImages(x, np.concatenate(ys).astype(np.int64), list(NAMES))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    data = synthetic()
    model = fit(
        data, arch=TINY, recipe=Recipe(epochs=25, batch_size=32, lr=3e-3, holdout_fraction=0.25, seed=0)
    )
    path = tmp_path_factory.mktemp("models") / "pf"
    model.save_pretrained(path)
    return data, path


def test_training_learns_the_classes(trained):
    data, path = trained
    model = PreForgettableModel.from_pretrained(path)
    assert accuracy(model, synthetic(20, seed=1)) > 0.9


def test_forget_removes_prompt_from_saved_file_and_logs_it(trained, tmp_path):
    _, path = trained
    out = tmp_path / "forgot"
    result = forget_checkpoint(path, ["dot"], out=out)
    assert result.forgotten == ["dot"] and result.remaining == ["ring", "bar", "cross"]
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    with safe_open(str(out / "optimizer.safetensors"), "pt") as f:
        moments = set(f.keys())
    assert "prompts.2" not in keys and {"prompts.0", "prompts.1", "prompts.3"} <= keys
    assert not moments  # the whole optimiser state goes: shared-weight moments carry the prompt's direction
    meta = json.loads((out / "config.json").read_text())
    (entry,) = meta["forgetting_log"]
    assert entry["class"] == "dot" and "prompts.2.exp_avg" in entry["deleted"] and entry["at"]
    n_before = len(PreForgettableModel.from_pretrained(path).optimizer_state)
    assert entry["also_deleted"].startswith(f"{n_before - 3} other optimiser tensors")
    assert meta["config"]["present"] == [0, 1, 3]


def test_forgetting_changes_predictions_only_for_that_class(trained):
    _, path = trained
    before = PreForgettableModel.from_pretrained(path)
    after = before.forget(["dot"])
    test = synthetic(30, seed=2)
    p0 = before.predict_proba(test.x, mask_forgotten=True).argmax(1)
    p1 = after.predict_proba(test.x, mask_forgotten=True).argmax(1)
    other = test.y != 2
    assert (p0[other] == p1[other]).mean() >= 0.95
    assert (p0[~other] == 2).mean() > 0.9  # it was predicted before...
    assert not (p1 == 2).any()  # ...and can no longer be predicted
    unmasked = after.predict_proba(test.x[~other])
    assert (
        unmasked[:, 2].mean() < 0.5
    )  # the kept shared-head row gets no confident mass (KL-to-uniform training)


def test_forgetting_is_idempotent(trained, tmp_path):
    _, path = trained
    out = tmp_path / "m"
    forget_checkpoint(path, ["bar"], out=out)
    first = (out / "model.safetensors").read_bytes(), (out / "config.json").read_text()
    again = forget_checkpoint(out, ["bar"])
    assert again.forgotten == [] and again.already_forgotten == ["bar"]
    assert ((out / "model.safetensors").read_bytes(), (out / "config.json").read_text()) == first


def test_unknown_class_is_refused_before_anything_changes(trained, tmp_path):
    _, path = trained
    out = tmp_path / "m"
    forget_checkpoint(path, [], out=out)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(
        UnknownNameError, match=r"^unknown class 'zebra'; this model knows: ring, bar, dot, cross$"
    ):
        forget_checkpoint(out, ["bar", "zebra"])
    assert (out / "model.safetensors").read_bytes() == before


def test_cannot_forget_every_class():
    model = PreForgettableModel(
        ForgettableConfig(["a", "b"], backbone="tiny-vit-8", image_size=8, channels=1, patch_size=2, **TINY)
    )
    with pytest.raises(ConfigError, match="every class"):
        model.forget(["a", "b"])


def test_save_load_round_trip(trained, tmp_path):
    _, path = trained
    model = PreForgettableModel.from_pretrained(path)
    model.save_pretrained(tmp_path / "copy")
    again = PreForgettableModel.from_pretrained(tmp_path / "copy")
    x = model.preprocess(synthetic(5, seed=3).x)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert again.recipe == model.recipe and not again.training
    assert again.optimizer_state.keys() == model.optimizer_state.keys()


def test_prompt_tied_head_deletes_the_class_row():
    cfg = ForgettableConfig(
        NAMES, backbone="tiny-vit-8", image_size=8, channels=1, patch_size=2, head="prompt_tied", **TINY
    )
    model = PreForgettableModel(cfg).eval()
    x = model.preprocess(synthetic(3).x)
    after = model.forget(["bar"])
    with torch.no_grad():
        logits = after(x)
    assert torch.isinf(logits[:, 1]).all() and torch.isfinite(logits[:, [0, 2, 3]]).all()
    assert (after.predict_proba(synthetic(3).x)[:, 1] == 0).all()


def test_prompt_tuning_trains_nothing_every_class_shares_but_the_head(tmp_path):
    """`tuning="prompts"`: the backbone stays bit-identical, no LoRA is added, prompts and head learn."""
    torch.manual_seed(0)
    cfg = ForgettableConfig(
        NAMES, backbone="tiny-vit-8", image_size=8, channels=1, patch_size=2, tuning="prompts", **TINY
    )
    model = PreForgettableModel(cfg)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_model(model, synthetic(), recipe=Recipe(epochs=3, batch_size=32, lr=3e-3, seed=0))
    after = model.state_dict()
    assert all(".parametrizations." not in k for k in after)
    changed = {k for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(("prompts.", "head.")) for k in changed)
    assert {f"prompts.{c}" for c in range(len(NAMES))} <= changed
    model.save_pretrained(tmp_path / "m")
    assert PreForgettableModel.from_pretrained(tmp_path / "m").config.tuning == "prompts"


def test_prompt_sets_never_use_own_class_as_distractor():
    gen = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 1, 2, 3, 2])
    present = torch.arange(4)
    mixed, wrong = prompt_sets(y, present, 3, 1, gen)
    assert wrong.shape == (5, 3) and mixed.shape == (5, 4)
    assert not (wrong == y[:, None]).any()
    assert torch.equal(mixed[:, 1], y)
    assert all(len(set(row.tolist())) == 4 for row in mixed)


def test_kl_to_uniform_is_zero_only_for_uniform_outputs():
    assert float(kl_to_uniform(torch.zeros(2, 5))) == pytest.approx(0, abs=1e-6)
    assert float(kl_to_uniform(torch.tensor([[5.0, 0, 0, 0]]))) > 1
    tied = torch.tensor([[0.0, -torch.inf, 0.0]])  # a deleted tied-head row is left out of U
    assert float(kl_to_uniform(tied)) == pytest.approx(0, abs=1e-6)


def test_augment_translates_and_flips_each_sample():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    assert torch.equal(augment(x, shift=0, hflip=False, gen=torch.Generator()), x)
    gen = torch.Generator().manual_seed(0)
    moved = augment(x, shift=1, hflip=False, gen=gen)
    assert moved.shape == x.shape
    for a, b in zip(moved, x, strict=True):  # the 2x2 centre of each output is a shifted crop of the input
        padded = torch.nn.functional.pad(b[None], (1, 1, 1, 1), mode="reflect")[0]
        crops = [padded[:, i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
        assert any(torch.equal(a, c) for c in crops)
    flipped = [augment(x, shift=0, hflip=True, gen=torch.Generator().manual_seed(s)) for s in range(8)]
    assert any(torch.equal(f[0], x[0].flip(-1)) for f in flipped)
    assert any(torch.equal(f[0], x[0]) for f in flipped)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    constant = Recipe(lr=0.01)
    assert {learning_rate(constant, s, 100) for s in range(100)} == {0.01}
    cosine = Recipe(lr=0.01, schedule="cosine")
    lrs = [learning_rate(cosine, s, 100) for s in range(100)]
    assert lrs[0] < lrs[4] == pytest.approx(0.01) and lrs[-1] < 1e-4
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    with pytest.raises(ConfigError, match="schedule must be one of constant, cosine"):
        Recipe(schedule="step")


@pytest.mark.parametrize("tuning", ["lora", "prompts"])
def test_a_frozen_untrained_backbone_is_refused(tuning):
    with pytest.raises(ConfigError, match=f"--tuning {tuning} freezes the backbone"):
        fit(synthetic(10), tuning=tuning, arch=TINY, recipe=Recipe(epochs=1))
