"""T2UE generators and zero-contact noise generation: eps bound, no image parameter, checkpoint round trip."""

from __future__ import annotations

import inspect
import json
import shutil

import numpy as np
import pytest
import torch

from protect.errors import ConfigError, IntegrityError
from unlearnable.t2ue import generate_noise
from unlearnable.t2ue.generator import GeneratorConfig, create_generator, load_generator, save_generator
from unlearnable.t2ue.pipeline import NoiseGenPipeline, class_captions, parse_size
from unlearnable.t2ue.surrogate import MICRO_CLIP as CLIP
from unlearnable.t2ue.train import train_t2ue

CAPTIONS = ["a red square", "a blue circle", "a green cross", "a red square", "a white triangle on black"]


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    """A real generator folder: tiny surrogate and generator, trained one epoch on 16 random pairs."""
    root = tmp_path_factory.mktemp("t2ue")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    np.savez(root / "pairs.npz", x=x, captions=np.array([f"a {c} thing" for c in "abcdefghijklmnop"]))
    train_t2ue(
        root / "pairs.npz",
        root / "gen",
        epochs=1,
        clip_epochs=1,
        image_size=16,
        batch_size=8,
        clip_config=CLIP,
        generator_options={"ngf": 8, "cond_hidden": 16},
    )
    return root / "gen"


@pytest.mark.parametrize("arch", ["ssa", "unet"])
def test_delta_within_eps_for_any_weights(arch):
    config = GeneratorConfig(
        arch=arch, text_dim=32, image_size=16, eps=4 / 255, ngf=8, cond_hidden=16, unet_channels=[16, 16]
    )
    g = create_generator(config).eval()
    with torch.no_grad():
        for p in g.parameters():  # push every unit into saturation: tanh scaling must still bound delta
            p.mul_(50.0)
        emb = torch.randn(3, 32)
        states = torch.randn(3, 7, 32)
        delta = g(emb, torch.randn(3, *g.z_shape) * 10, states, torch.ones(3, 7, dtype=torch.bool))
    assert delta.shape == (3, 3, 16, 16)
    assert delta.abs().max().item() <= 4 / 255 + 1e-7
    assert delta.abs().max().item() > 2 / 255  # not a degenerate all-zero output


def test_noise_api_takes_no_image():
    params = inspect.signature(generate_noise).parameters
    assert list(params) == ["captions", "generator", "size", "seed", "device", "z_mode"]
    call = inspect.signature(NoiseGenPipeline.__call__).parameters
    assert not {"image", "images", "x", "pixels", "src"} & (set(params) | set(call))


def test_generated_noise_bounded_and_deterministic(gen_dir):
    a = generate_noise(CAPTIONS, generator=gen_dir, size=(16, 16), seed=3)
    b = generate_noise(CAPTIONS, generator=gen_dir, size=(16, 16), seed=3)
    c = generate_noise(CAPTIONS, generator=gen_dir, size=(16, 16), seed=4)
    assert a.dtype == np.float32 and a.shape == (5, 16, 16, 3)
    assert np.abs(a).max() <= 8 / 255 + 1e-7
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    big = generate_noise(CAPTIONS[:2], generator=gen_dir, size=(40, 24), seed=3)
    assert big.shape == (2, 40, 24, 3) and np.abs(big).max() <= 8 / 255 + 1e-7


def test_noise_does_not_depend_on_batching(gen_dir):
    pipe = NoiseGenPipeline.from_pretrained(gen_dir)
    together = pipe(CAPTIONS, seed=1, batch_size=2)
    alone = np.concatenate([pipe(CAPTIONS[:3], seed=1), pipe(CAPTIONS[3:], seed=1)])
    np.testing.assert_allclose(together[:3], alone[:3], atol=1e-7)
    # class-wise mode: equal captions get equal noise wherever they sit
    cls = pipe(CAPTIONS, seed=1, z_mode="caption")
    np.testing.assert_allclose(cls[0], cls[3], atol=1e-7)
    assert not np.allclose(together[0], together[3])


def test_checkpoint_round_trip_identical_noise(gen_dir, tmp_path):
    g = load_generator(gen_dir)
    save_generator(g, tmp_path / "copy", extra={"surrogate": {"source": "local"}})
    shutil.copytree(gen_dir / "surrogate", tmp_path / "copy" / "surrogate")
    a = generate_noise(CAPTIONS, generator=gen_dir, size=(16, 16), seed=7)
    b = generate_noise(CAPTIONS, generator=tmp_path / "copy", size=(16, 16), seed=7)
    np.testing.assert_array_equal(a, b)


def test_class_prompts_and_sizes():
    assert class_captions(["cat", "pickup_truck"]) == ["a photo of a cat", "a photo of a pickup truck"]
    assert parse_size("224x160") == (224, 160)
    with pytest.raises(ValueError, match="HxW"):
        parse_size("big")


def test_protect_images_t2ue_shortcut(gen_dir, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from protect.cli import cli

    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(src / f"{i}.png")
    (tmp_path / "captions.csv").write_text(
        "file,caption\n0.png,a red square\n1.png,a blue circle\n2.png,a dog\n"
    )
    res = CliRunner().invoke(
        cli,
        ["images", str(src), "--out", str(tmp_path / "out"), "--method", "t2ue", "--generator", str(gen_dir),
         "--captions", str(tmp_path / "captions.csv")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "protected 3 image(s)" in res.output
    for i in range(3):
        before = np.asarray(Image.open(src / f"{i}.png"), dtype=int)
        after = np.asarray(Image.open(tmp_path / "out" / f"{i}.png"), dtype=int)
        assert 0 < np.abs(after - before).max() <= 8


def test_unet_ignores_padding_tokens_and_an_all_keep_mask_changes_nothing():
    torch.manual_seed(0)
    g = create_generator(
        GeneratorConfig(arch="unet", text_dim=16, image_size=8, unet_channels=[16, 16])
    ).eval()
    z, states = torch.randn(2, *g.z_shape), torch.randn(2, 6, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = g(None, z, states, mask)
        noisy = states.clone()
        noisy[~mask] = 100.0 * torch.randn(int((~mask).sum()), 16)
        assert torch.allclose(g(None, z, noisy, mask), out, atol=1e-6)
        full = torch.ones(2, 6, dtype=torch.bool)
        assert torch.allclose(g(None, z, states, full), g(None, z, states, None), atol=1e-7)


def test_unet_pooled_text_conditions_every_block_only_when_configured():
    torch.manual_seed(0)
    z, states = torch.randn(2, 4, 8, 8), torch.randn(2, 6, 16)
    emb_a, emb_b = torch.randn(2, 12), torch.randn(2, 12)
    for pooled_dim in (0, 12):
        config = GeneratorConfig(
            arch="unet", text_dim=16, image_size=8, unet_channels=[16, 16], pooled_dim=pooled_dim
        )
        g = create_generator(config).eval()
        with torch.no_grad():
            changed = (g(emb_a, z, states) - g(emb_b, z, states)).abs().max().item()
        assert (changed > 1e-4) == bool(pooled_dim), (pooled_dim, changed)


def _noise_cli(generator, tmp_path, *extra, size="16x16", out=None):
    from click.testing import CliRunner

    from protect.cli import cli

    (tmp_path / "c.csv").write_text("file,caption\na.png,a red square\nb.png,a dog\n", encoding="utf-8")
    out = out or tmp_path / "n.npz"
    args = ["t2ue", "noise", str(tmp_path / "c.csv"), "--generator", str(generator), "--size", size]
    return CliRunner().invoke(cli, [*args, "--out", str(out), *extra])


def _one_line_error(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_non_finite_generator_weights_are_an_error_not_noise(gen_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "gen"
    shutil.copytree(gen_dir, bad)
    state = load_file(str(bad / "model.safetensors"))
    state["out.bias"] = torch.full_like(state["out.bias"], float("nan"))
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(IntegrityError, match="NaN or infinite"):
        generate_noise(CAPTIONS, generator=bad, size=(16, 16))
    assert "NaN or infinite" in _one_line_error(_noise_cli(bad, tmp_path))
    assert not (tmp_path / "n.npz").exists()


def _corrupt(kind, folder):
    weights, sur = folder / "model.safetensors", folder / "surrogate" / "model.safetensors"
    if kind == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif kind == "empty weights":
        weights.write_bytes(b"")
    elif kind == "truncated surrogate":
        sur.write_bytes(sur.read_bytes()[: sur.stat().st_size // 2])
    elif kind == "config is a list":
        (folder / "config.json").write_text("[1, 2]")
    elif kind == "surrogate config is a list":
        (folder / "surrogate" / "config.json").write_text("[1, 2]")
    elif kind in ("config does not match weights", "a size written as text"):
        config = json.loads((folder / "config.json").read_text())
        config["generator"]["ngf"] = 4 if kind == "config does not match weights" else "16"
        (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "kind,message",
    [
        ("truncated weights", "cannot load"),
        ("empty weights", "cannot load"),
        ("truncated surrogate", "cannot read"),
        ("config is a list", "must hold a JSON object"),
        ("surrogate config is a list", "cannot read the CLIP"),
        ("config does not match weights", "size mismatch"),
        ("a size written as text", "generator ngf must be int, got '16'"),
    ],
)
def test_corrupt_generator_folders_are_one_line(gen_dir, tmp_path, kind, message):
    bad = tmp_path / "gen"
    shutil.copytree(gen_dir, bad)
    _corrupt(kind, bad)
    line = _one_line_error(_noise_cli(bad, tmp_path))
    assert message in line and len(line) < 400, line
    assert not (tmp_path / "n.npz").exists()


def test_noise_size_and_out_are_checked(gen_dir, tmp_path):
    for size in ("100000x100000", "4x4", "8x5000"):
        assert "8 to 4096 pixels per side" in _one_line_error(_noise_cli(gen_dir, tmp_path, size=size))
    assert parse_size("8x4096") == (8, 4096)
    with pytest.raises(ConfigError, match="GiB"):
        NoiseGenPipeline.from_pretrained(gen_dir)(["a dog"] * 100, size=(4096, 4096))
    (tmp_path / "d.npz").mkdir()
    assert "existing folder" in _one_line_error(_noise_cli(gen_dir, tmp_path, out=tmp_path / "d.npz"))


def test_noise_never_replaces_an_existing_file_unasked(gen_dir, tmp_path):
    kept = tmp_path / "pairs.npz"
    kept.write_bytes(b"the owner's pairs")
    line = _one_line_error(_noise_cli(gen_dir, tmp_path, out=kept))
    assert "exists; pass --overwrite" in line and kept.read_bytes() == b"the owner's pairs"
    assert _noise_cli(gen_dir, tmp_path, "--overwrite", out=kept).exit_code == 0
    assert len(np.load(kept)["delta"]) == 2


def test_protect_images_t2ue_epsilon_is_the_cap(gen_dir, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from protect.cli import cli

    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(src / "0.png")
    (tmp_path / "captions.csv").write_text("file,caption\n0.png,a red square\n")
    args = ["images", str(src), "--method", "t2ue", "--generator", str(gen_dir),
            "--captions", str(tmp_path / "captions.csv")]  # fmt: skip
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out"), "--epsilon", "2/255"])
    assert res.exit_code == 2 and "exceeds the cap --epsilon 2.00/255" in _one_line_error(res)
    assert not list((tmp_path / "out").glob("*.png"))
