"""T2UE training (Eq. 4) lowers the frozen surrogate's loss, and the CLI runs train -> noise -> apply end to end."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from protect.cli import cli
from unlearnable.t2ue import generate_noise
from unlearnable.t2ue.generator import GeneratorConfig, create_generator
from unlearnable.t2ue.surrogate import MICRO_CLIP as CLIP
from unlearnable.t2ue.surrogate import create_clip
from unlearnable.t2ue.train import surrogate_losses, train_generator, train_t2ue


def test_generator_training_lowers_surrogate_loss():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    captions = [
        f"a {c} {s}"
        for c in ("red", "blue", "green", "white")
        for s in ("cat", "dog", "car", "ship", "bird", "frog", "cup", "tree")
    ]
    surrogate = create_clip(CLIP, seed=0).freeze()
    weights = {k: v.clone() for k, v in surrogate.model.state_dict().items()}
    generator = create_generator(GeneratorConfig(text_dim=32, image_size=16, ngf=8, cond_hidden=16))
    before = surrogate_losses(surrogate, generator, x, captions, batch_size=32)
    history = train_generator(generator, surrogate, x, captions, epochs=25, batch_size=8, lr=3e-3)
    after = surrogate_losses(surrogate, generator, x, captions, batch_size=32)
    assert history[-1] < history[0]
    assert after["protected"] < before["protected"] - 0.03, (before, after)
    # the surrogate stayed frozen: only the generator was trained
    for k, v in surrogate.model.state_dict().items():
        assert np.array_equal(v.numpy(), weights[k].numpy()), k


def test_cli_train_noise_apply(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    y = np.arange(12) % 3
    np.savez(
        tmp_path / "pairs.npz", x=x, captions=np.array([f"photo {i} of a {'abc'[i % 3]}" for i in range(12)])
    )
    np.savez(tmp_path / "mine.npz", x=x[:6], y=y[:6], classes=np.array(["a", "b", "c"]))
    runner = CliRunner()
    out = runner.invoke(
        cli,
        [
            "t2ue",
            "train",
            str(tmp_path / "pairs.npz"),
            "--out",
            str(tmp_path / "gen"),
            "--epochs",
            "1",
            "--clip-epochs",
            "1",
            "--size",
            "16",
            "--device",
            "cpu",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "generator ->" in out.output
    config = json.loads((tmp_path / "gen" / "config.json").read_text())
    assert config["generator"]["arch"] == "ssa" and config["surrogate"] == {"source": "local"}
    assert (tmp_path / "gen" / "model.safetensors").exists() and (tmp_path / "gen" / "surrogate").is_dir()

    out = runner.invoke(
        cli,
        [
            "t2ue",
            "noise",
            "--classes",
            "a,b,c",
            "--generator",
            str(tmp_path / "gen"),
            "--size",
            "16x16",
            "--out",
            str(tmp_path / "noise.npz"),
            "--seed",
            "2",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "wrote 3 perturbation(s) 16x16 (eps 8/255, seed 2)" in out.output
    out = runner.invoke(
        cli,
        [
            "t2ue",
            "apply",
            str(tmp_path / "noise.npz"),
            str(tmp_path / "mine.npz"),
            "--out",
            str(tmp_path / "prot.npz"),
        ],
    )
    assert out.exit_code == 0, out.output
    with np.load(tmp_path / "prot.npz") as d:
        change = np.abs(d["x"].astype(int) - x[:6].astype(int))
    assert 0 < change.max() <= 8
    assert (tmp_path / "prot-report" / "protect-report.json").exists()

    out = runner.invoke(
        cli,
        [
            "t2ue",
            "noise",
            "--generator",
            str(tmp_path / "gen"),
            "--size",
            "16x16",
            "--out",
            str(tmp_path / "n.npz"),
        ],
    )
    assert out.exit_code == 2 and "either CAPTIONS.csv or --classes" in out.output


def test_unet_ablation_trains_and_generates(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "pairs.npz", x=x, captions=np.array([f"scene number {i}" for i in range(8)]))
    summary = train_t2ue(
        tmp_path / "pairs.npz",
        tmp_path / "gen",
        arch="unet",
        epochs=1,
        clip_epochs=1,
        image_size=16,
        batch_size=8,
        clip_config=CLIP,
        generator_options={"unet_channels": [16, 16]},
    )
    assert summary["pairs"] == 8 and len(summary["generator_loss_history"]) == 1
    delta = generate_noise(
        ["scene number 1", "a new caption"], generator=tmp_path / "gen", size=(16, 16), seed=0
    )
    assert delta.shape == (2, 16, 16, 3) and 0 < np.abs(delta).max() <= 8 / 255 + 1e-7


def test_train_refuses_unusable_arguments_before_training(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (4, 20, 20, 3), dtype=np.uint8)
    np.savez(tmp_path / "pairs.npz", x=x, captions=np.array(["a cat", "a dog", "a car", "a cup"]))
    (tmp_path / "afile").write_text("not a folder")
    base = ["t2ue", "train", str(tmp_path / "pairs.npz"), "--epochs", "1", "--clip-epochs", "1"]
    base += ["--device", "cpu"]
    cases = [
        (["--out", str(tmp_path / "afile"), "--size", "16"], "exists and is not a folder"),
        (["--out", str(tmp_path / "g1"), "--size", "16", "--lr", "nan"], "must be a positive number"),
        (["--out", str(tmp_path / "g2"), "--size", "16", "--lr", "inf"], "must be a positive number"),
        (["--out", str(tmp_path / "g3"), "--size", "16", "--lr", "-1"], "not in the range x>0"),
        (["--out", str(tmp_path / "g4"), "--size", "20"], "power of two >= 8, got 10"),
        (["--out", str(tmp_path / "g5"), "--size", "16", "--clip", "ViT-B-32"], "needs --pretrained TAG"),
    ]
    for args, message in cases:
        res = CliRunner().invoke(cli, [*base, *args])
        assert res.exit_code == 2 and message in res.output, (args, res.output)
        assert isinstance(res.exception, SystemExit), res.output
    assert (tmp_path / "afile").read_text() == "not a folder"
    assert not any((tmp_path / f"g{i}").exists() for i in range(1, 6))  # no half-built generator folder


def test_train_never_replaces_what_is_not_its_own_generator(tmp_path):
    """`--out` once overwrote any folder: a trained model (left unreadable), a photo folder, PAIRS itself."""
    rng = np.random.default_rng(4)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    lines = ["file,caption"]
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(pairs / f"{i}.png")
        lines.append(f"{i}.png,a photo of thing {i}")
    (pairs / "captions.csv").write_text("\n".join(lines) + "\n")
    model = tmp_path / "model"
    model.mkdir()
    for name, text in (
        ("config.json", '{"format": "protect.forgettable/1"}'),
        ("optimizer.safetensors", "x"),
    ):
        (model / name).write_text(text)
    base = [
        "t2ue",
        "train",
        str(pairs),
        "--epochs",
        "1",
        "--clip-epochs",
        "1",
        "--size",
        "16",
        "--device",
        "cpu",
    ]
    for out, message in [
        (model, "is not a T2UE generator folder"),
        (pairs, "inside PAIRS"),
        (pairs / "gen", "inside PAIRS"),
    ]:
        res = CliRunner().invoke(cli, [*base, "--out", str(out)])
        assert res.exit_code == 2 and message in res.output, res.output
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "optimizer.safetensors"]
    assert CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "gen")]).exit_code == 0
    before = (tmp_path / "gen" / "model.safetensors").read_bytes()
    res = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "gen"), "--seed", "1"])
    assert res.exit_code == 2 and "pass --overwrite" in res.output
    assert (tmp_path / "gen" / "model.safetensors").read_bytes() == before
    res = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "gen"), "--seed", "1", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "gen" / "model.safetensors").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen", "model", "pairs"]  # no .tmp / .old left
