"""`protect model ...` end to end through Click: train, info, predict, forget, audit, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from protect.cli import cli


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """An .npz of three easy 8x8 classes and a model trained on it through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    x = rng.normal(30, 15, (90, 8, 8))
    y = np.repeat(np.arange(3), 30)
    for c in range(3):
        x[y == c, :, c * 2 : c * 2 + 3] += 180
    np.savez(
        root / "data.npz",
        x=np.clip(x, 0, 255).astype(np.uint8)[..., None],
        y=y,
        classes=np.array(["left", "middle", "right"]),
    )
    result = CliRunner().invoke(
        cli,
        [
            "model",
            "train",
            str(root / "data.npz"),
            "--out",
            str(root / "m"),
            "--epochs",
            "3",
            "--schedule",
            "cosine",
            "--shift",
            "1",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "trained 3 classes (tiny-vit-8, full, shared head)" in result.output
    recipe = json.loads((root / "m" / "config.json").read_text())["recipe"]
    assert (recipe["schedule"], recipe["shift"], recipe["hflip"]) == ("cosine", 1, False)
    return root


def run(*args: str):
    return CliRunner().invoke(cli, ["model", *args])


def test_info_lists_classes_and_log(workdir):
    result = run("info", str(workdir / "m"))
    assert result.exit_code == 0
    assert "classes present (3): left, middle, right" in result.output
    assert "classes forgotten: none" in result.output


def test_forget_then_predict_never_outputs_the_class(workdir, tmp_path):
    out = tmp_path / "f"
    result = run("forget", str(workdir / "m"), "--classes", "middle", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "forgot middle in" in result.output and "remaining classes: left, right" in result.output
    assert "still holds the deleted prompts" in result.output
    again = run("forget", str(out), "--classes", "middle")
    assert again.exit_code == 0 and "already forgotten (nothing to do): middle" in again.output
    info = json.loads(run("info", str(out), "--json").output)
    assert info["classes_forgotten"] == ["middle"] and len(info["forgetting_log"]) == 1
    img = np.full((8, 8), 30, np.uint8)
    img[:, 2:5] = 210
    Image.fromarray(img).save(tmp_path / "middle.png")
    rows = json.loads(run("predict", str(out), str(tmp_path / "middle.png"), "--json").output)
    assert rows[0]["top"] in ("left", "right") and set(rows[0]["probabilities"]) == {"left", "right"}
    assert sum(rows[0]["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_unknown_class_is_one_clear_line(workdir):
    result = run("forget", str(workdir / "m"), "--classes", "zebra")
    assert result.exit_code == 2
    assert result.output == "Error: unknown class 'zebra'; this model knows: left, middle, right\n"


def test_corrupt_model_is_one_clear_line(workdir, tmp_path):
    import shutil

    shutil.copytree(workdir / "m", tmp_path / "bad")
    weights = tmp_path / "bad" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = run("info", str(tmp_path / "bad"))
    assert result.exit_code == 1 and result.output.startswith("Error: ") and result.output.count("\n") == 1


def test_audit_retrains_the_oracle_and_reports_json(workdir):
    result = run(
        "audit",
        str(workdir / "m"),
        "--data",
        str(workdir / "data.npz"),
        "--forgotten",
        "right",
        "--json",
        "--device",
        "cpu",
        "--relearn-steps",
        "10",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["forgotten"] == "right" and report["control_class"] == "left"
    assert report["oracle"]["forget_acc"] == 0.0  # the oracle has no output for the class
    assert [p["n"] for p in report["model"]["relearn"]] == [1, 5, 20]
    # 30 images per class, 20% held out, half of that for the attack: 20 samples are not there to draw
    assert [p["shots"] for p in report["model"]["relearn"]] == [1, 3, 3]
    assert report["hygiene"]["passed"] is True and report["hygiene"]["prompt_keys"] == []
    assert set(report["checks"]) >= {"retain_delta_le_2pp", "mia_within_oracle_ci", "checkpoint_hygiene"}
    assert 0 <= report["before"]["retain_acc_restricted"] <= 1 and "confidence" in report["mia_before"]


def test_train_never_replaces_a_model_silently(workdir):
    before = (workdir / "m" / "model.safetensors").read_bytes()
    result = run("train", str(workdir / "data.npz"), "--out", str(workdir / "m"), "--epochs", "1")
    assert result.exit_code == 2 and "exists; pass --overwrite" in result.output
    assert (workdir / "m" / "model.safetensors").read_bytes() == before


def test_audit_refuses_an_oracle_that_knows_the_class(workdir):
    args = ["--data", str(workdir / "data.npz"), "--forgotten", "right", "--device", "cpu"]
    result = run("audit", str(workdir / "m"), *args, "--oracle", str(workdir / "m"))
    assert result.exit_code == 2
    assert (
        result.output
        == f"Error: --oracle {workdir / 'm'} predicts 'right': an oracle is trained without it\n"
    )


def test_predict_reports_a_corrupt_image_and_still_predicts_the_others(workdir, tmp_path):
    Image.fromarray(np.full((8, 8), 30, np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    result = run("predict", str(workdir / "m"), str(tmp_path), "--json")
    assert result.exit_code == 1
    rows = {r["input"].rsplit("/", 1)[-1]: r for r in json.loads(result.output)}
    assert "error" in rows["bad.png"] and rows["good.png"]["top"] in ("left", "middle", "right")
    (tmp_path / "empty").mkdir()
    empty = run("predict", str(workdir / "m"), str(tmp_path / "empty"))
    assert empty.exit_code == 2 and "no images found" in empty.output


def test_forget_a_class_whose_name_has_a_comma(tmp_path):
    root = tmp_path / "data"
    for name, col in (("Smith, John", 1), ("b", 4), ("c", 6)):
        (root / name).mkdir(parents=True)
        for i in range(6):
            img = np.full((8, 8), 20 + i, np.uint8)
            img[:, col : col + 2] = 220
            Image.fromarray(img).save(root / name / f"{i}.png")
    assert run("train", str(root), "--out", str(tmp_path / "m"), "--epochs", "1").exit_code == 0
    result = run("forget", str(tmp_path / "m"), "--class", "Smith, John")
    assert result.exit_code == 0, result.output
    assert "remaining classes: b, c" in result.output
    assert run("forget", str(tmp_path / "m")).exit_code == 2


def test_train_can_start_from_another_models_frozen_backbone(workdir):
    """The paper's condition from the CLI: a backbone trained elsewhere, frozen, only prompts and head learn."""
    from forgettable.model import PreForgettableModel

    out = workdir / "from-donor"
    res = run(
        "train", str(workdir / "data.npz"), "--out", str(out), "--backbone-from", str(workdir / "m"),
        "--tuning", "prompts", "--epochs", "1", "--device", "cpu",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "(tiny-vit-8, prompts, shared head)" in res.output
    donor, model = (PreForgettableModel.from_pretrained(p) for p in (workdir / "m", out))
    theirs = donor.backbone.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in model.backbone.state_dict().items())
    assert model.recipe["backbone_init"].startswith("state:")
    again = run("train", str(workdir / "data.npz"), "--out", str(workdir / "x"), "--backbone-from", str(out))
    assert again.exit_code == 2 and "trained with --tuning prompts" in again.output
    audit = ["audit", str(out), "--data", str(workdir / "data.npz"), "--forgotten", "left", "--device", "cpu"]
    alone = run(*audit)
    assert alone.exit_code == 2 and "pass that model (--backbone-from)" in alone.output
    res = run(
        *audit, "--backbone-from", str(workdir / "m"), "--json"
    )  # the oracle starts from the same weights
    assert res.exit_code in (0, 1), res.output
    assert json.loads(res.output)["forgotten"] == "left"


def test_audit_of_a_model_that_already_forgot_another_class(tmp_path):
    """The re-learning attack draws shots of every class the model still knows, not of one it forgot before."""
    rng = np.random.default_rng(1)
    x = rng.normal(30, 15, (120, 8, 8))
    y = np.repeat(np.arange(4), 30)
    for c in range(4):
        x[y == c, c * 2 : c * 2 + 2, :] += 180
    names = np.array(["a", "b", "c", "d"])
    np.savez(tmp_path / "d.npz", x=np.clip(x, 0, 255).astype(np.uint8)[..., None], y=y, classes=names)
    assert (
        run(
            "train", str(tmp_path / "d.npz"), "--out", str(tmp_path / "m"), "--epochs", "3", "--device", "cpu"
        ).exit_code
        == 0
    )
    assert run("forget", str(tmp_path / "m"), "--classes", "a").exit_code == 0
    args = ["audit", str(tmp_path / "m"), "--data", str(tmp_path / "d.npz"), "--forgotten", "d", "--json"]
    result = run(*args, "--device", "cpu", "--relearn-steps", "2")
    assert result.exit_code == 0, result.output
    assert [p["n"] for p in json.loads(result.output)["model"]["relearn"]] == [1, 5, 20]


def test_inputs_and_outputs_are_checked_before_training(tmp_path):
    """Exit 2 and one line, with nothing trained first: an --out under a file, a truncated image, uint64 labels."""
    (tmp_path / "afile").write_text("not a folder")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (6, 8, 8, 1), np.uint8), y=np.array([0, 1] * 3))
    result = run("train", str(tmp_path / "d.npz"), "--out", str(tmp_path / "afile" / "m"), "--epochs", "1")
    assert (
        result.exit_code == 2
        and result.output == f"Error: cannot write to {tmp_path / 'afile'}: Not a directory\n"
    )
    y = np.array([0, 1, 0, 1, 0, 2**64 - 1], np.uint64)  # wraps to -1 as int64
    np.savez(tmp_path / "u64.npz", x=rng.integers(0, 256, (6, 8, 8, 1), np.uint8), y=y)
    result = run("train", str(tmp_path / "u64.npz"), "--out", str(tmp_path / "m"), "--epochs", "1")
    assert (
        result.exit_code == 2
        and "labels must lie in 0..1048575, found 0..18446744073709551615" in result.output
    )
    for c in ("a", "b"):
        (tmp_path / "folder" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "folder" / c / f"{i}.png")
    good = (tmp_path / "folder" / "b" / "1.png").read_bytes()
    (tmp_path / "folder" / "b" / "1.png").write_bytes(good[: len(good) // 2])
    result = run("train", str(tmp_path / "folder"), "--out", str(tmp_path / "m"), "--epochs", "1")
    assert (
        result.exit_code == 2
        and result.output.startswith("Error: cannot read ")
        and result.output.count("\n") == 1
    )
    assert not (tmp_path / "m").exists()


def test_outputs_that_would_land_on_the_inputs_are_refused_first(workdir, tmp_path):
    data = workdir / "data.npz"
    before = data.read_bytes()
    res = run(
        "train", str(data), "--out", str(data), "--overwrite", "--epochs", "1"
    )  # refused before training
    assert res.exit_code == 2 and "lies inside" in res.output and "trained" not in res.output, res.output
    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True)
    res = run("train", str(tmp_path / "imgs"), "--out", str(tmp_path / "imgs" / "model"), "--epochs", "1")
    assert res.exit_code == 2 and "lies inside" in res.output
    res = run("forget", str(workdir / "m"), "--classes", "left", "--out", str(workdir / "m" / "sub"))
    assert res.exit_code == 2 and "lies inside" in res.output
    assert not (workdir / "m" / "sub").exists() and data.read_bytes() == before
    assert "left" in run("info", str(workdir / "m")).output


def test_audit_refuses_inputs_that_would_make_its_verdict_meaningless(workdir, tmp_path):
    """Members swapped with non-members, or an unrelated "original", once passed every check."""
    with np.load(workdir / "data.npz") as d:
        x, y, classes = d["x"], d["y"], d["classes"]
    np.savez(tmp_path / "other.npz", x=255 - x, y=y, classes=classes)
    args = ["--forgotten", "right", "--device", "cpu", "--relearn-steps", "1"]
    res = run(
        "audit",
        str(workdir / "m"),
        "--data",
        str(tmp_path / "other.npz"),
        *args,
        "--holdout",
        str(workdir / "data.npz"),
    )
    assert res.exit_code == 2 and "not the data this model was trained on" in res.output
    res = run(
        "audit",
        str(workdir / "m"),
        "--data",
        str(workdir / "data.npz"),
        *args,
        "--holdout",
        str(workdir / "data.npz"),
    )
    assert res.exit_code == 2 and "images the model trained on" in res.output
    assert (
        run("forget", str(workdir / "m"), "--classes", "right", "--out", str(tmp_path / "f")).exit_code == 0
    )
    other = ["--out", str(tmp_path / "o"), "--epochs", "1", "--seed", "5", "--device", "cpu"]
    assert run("train", str(workdir / "data.npz"), *other).exit_code == 0
    res = run(
        "audit",
        str(tmp_path / "f"),
        "--data",
        str(workdir / "data.npz"),
        *args,
        "--original",
        str(tmp_path / "o"),
    )
    assert res.exit_code == 2 and "is not this model before forgetting 'right'" in res.output
    res = run(
        "audit",
        str(tmp_path / "f"),
        "--data",
        str(workdir / "data.npz"),
        *args,
        "--original",
        str(workdir / "m"),
        "--json",
    )
    assert res.exit_code in (0, 1) and json.loads(res.output)["forgotten"] == "right", res.output
