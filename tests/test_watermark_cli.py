"""`protect watermark embed` / `verify` end to end on tiny images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from protect.cli import cli
from protect.imageio import ArrayDataset, save_npz


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "photos"
    (src / "cats").mkdir(parents=True)
    a, c = data.astronaut(), data.chelsea()
    for i in range(12):
        img = (a if i % 2 else c)[i * 11 : i * 11 + 48, i * 13 : i * 13 + 64]
        Image.fromarray(img).save(src / ("cats" if i < 4 else ".") / f"im{i:02d}.png")
    return src


def _run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def test_embed_then_verify_round_trip(photos, tmp_path):
    out = tmp_path / "release"
    before = {p: p.read_bytes() for p in photos.rglob("*.png")}
    r = _run("watermark", "embed", photos, "--out", out, "--message", "AB", "--key", "s3cret", "--tau", "0.8")
    assert r.exit_code == 0, r.output
    assert "marked 12 images" in r.output
    assert before == {p: p.read_bytes() for p in photos.rglob("*.png")}  # originals untouched
    assert (out / "cats" / "im00.png").exists()
    manifest = json.loads((out / "watermark-manifest.json").read_text())
    assert "s3cret" not in json.dumps(manifest)
    assert manifest["settings"]["layout"]["sub_bits"] == 10 and len(manifest["images"]) == 12
    assert all(row["psnr"] > 35 and row["ssim"] > 0.9 for row in manifest["images"])

    r = _run("watermark", "verify", out, "--key", "s3cret", "--message", "AB", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["verdict"] == "match" and result["message"] == "AB" and result["bit_accuracy"] == 1.0
    assert result["images_read"] == 12 and result["images_used"] == 12 and result["p_value"] < 1e-6

    r = _run("watermark", "verify", out, "--key", "s3cret", "--manifest", out / "watermark-manifest.json")
    assert r.exit_code == 0 and "match" in r.output and "message: AB" in r.output


def test_wrong_key_and_unmarked_images_give_no_watermark(photos, tmp_path):
    out = tmp_path / "release"
    assert _run("watermark", "embed", photos, "--out", out, "--message", "AB", "--key", "k1").exit_code == 0
    for suspect, key in ((out, "k2"), (photos, "k1")):
        r = _run("watermark", "verify", suspect, "--key", key, "--message", "AB", "--json")
        assert r.exit_code == 1
        assert json.loads(r.output)["verdict"] == "no-watermark"


def test_key_from_file_or_environment(photos, tmp_path):
    out = tmp_path / "release"
    key_file = tmp_path / "owner.key"
    key_file.write_text("from-a-file\n")
    r = _run(
        "watermark", "embed", photos, "--out", out, "--message", "Z", "--key-file", key_file, "--tau", "0.6"
    )
    assert r.exit_code == 0, r.output
    r = _run(
        "watermark",
        "verify",
        out,
        "--message-bits",
        "8",
        "--tau",
        "0.6",
        "--json",
        env={"PROTECT_WATERMARK_KEY": "from-a-file"},
    )
    assert json.loads(r.output)["message"] == "Z"
    r = _run("watermark", "verify", out, "--message-bits", "8", env={"PROTECT_WATERMARK_KEY": ""})
    assert (
        r.exit_code == 2 and "Error: no key: pass --key, --key-file or set PROTECT_WATERMARK_KEY" in r.output
    )


def test_npz_in_and_out(tmp_path):
    rng = np.random.default_rng(0)
    crops = np.stack([data.astronaut()[i * 9 : i * 9 + 32, i * 7 : i * 7 + 32] for i in range(40)])
    save_npz(tmp_path / "set.npz", ArrayDataset(x=crops, y=rng.integers(0, 10, 40), extras={}))
    r = _run(
        "watermark",
        "embed",
        tmp_path / "set.npz",
        "--out",
        tmp_path / "marked.npz",
        "--message",
        "bits:1011",
        "--key",
        "k",
        "--tau",
        "0.8",
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "marked-report" / "watermark-manifest.json").exists()
    r = _run("watermark", "verify", tmp_path / "marked.npz", "--key", "k", "--message", "bits:1011", "--json")
    assert json.loads(r.output)["verdict"] == "match"


def test_images_too_small_for_the_payload_give_one_clear_line(tmp_path):
    src = tmp_path / "tiny"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 100 + i, np.uint8)).save(src / f"t{i}.png")
    r = _run("watermark", "verify", src, "--key", "k", "--message", "AB")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "Error: a 8x8 image holds 2 dwtdct payload bits but 10 are needed: use larger images, a higher --tau "
        "(shorter per-image payload) or a shorter message"
    ]
    r = _run("watermark", "embed", src, "--out", tmp_path / "o", "--message", "AB", "--key", "k")
    assert r.exit_code == 2 and "skipped 3" in r.output


def test_resume_redoes_missing_files_with_the_same_combination(photos, tmp_path):
    out = tmp_path / "release"
    args = ("watermark", "embed", photos, "--out", out, "--message", "AB", "--key", "k", "--tau", "0.6")
    assert _run(*args).exit_code == 0
    victim = out / "im07.png"
    before = victim.read_bytes()
    victim.unlink()
    r = _run(*args, "--resume")
    assert r.exit_code == 0, r.output
    assert victim.read_bytes() == before  # same image position -> same combination and pixels
    manifest = json.loads((out / "watermark-manifest.json").read_text())
    assert len(manifest["images"]) == 12
