"""Reading and writing images: what a folder lists, what a file can and cannot be, what each format keeps."""

import json
import logging
import os
import struct
import warnings
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import protect.imageio as imageio
import protect.metrics as metrics
from protect.cli import cli
from protect.errors import UnreadableImageError
from protect.imageio import Picture, decode_pixels, encode, find_images, fit_format, load_image, probe_image

FAST = ["--steps", "1", "--resolution", "16", "--device", "cpu"]


def _png(path: Path, seed: int = 0, shape=(12, 10, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def _png16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit RGB (3 channels) or grey + alpha (2) PNG, written by hand: PIL saves neither."""
    h, w, channels = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 2: 4}[channels], 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def test_linked_folders_are_followed_but_loops_and_links_into_the_destination_are_not(tmp_path):
    src, elsewhere, dst = tmp_path / "src", tmp_path / "elsewhere", tmp_path / "dst"
    _png(src / "a" / "1.png")
    _png(elsewhere / "2.png")
    _png(dst / "old.png")
    (src / "linked").symlink_to(elsewhere)
    (src / "a" / "loop").symlink_to(src)
    (src / "out").symlink_to(dst)
    (src / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    found = [p.relative_to(src).as_posix() for p in find_images(src, exclude=[dst])]
    assert found == ["a/1.png", "gone.jpg", "linked/2.png"]
    assert "out/old.png" in [p.relative_to(src).as_posix() for p in find_images(src)]
    with pytest.raises(UnreadableImageError, match="symbolic link to .*missing.jpg, which is missing"):
        load_image(src / "gone.jpg")


def test_each_real_folder_is_listed_once_and_unfollowable_links_are_listed_to_be_skipped(tmp_path):
    src = tmp_path / "src"
    for name in "abc":
        _png(src / name / f"{name}.png")
    for name in "abc":  # every folder links to every other: listing each path would grow factorially
        for other in "abc":
            if other != name:
                (src / name / f"to-{other}").symlink_to(src / other)
    (src / "self.png").symlink_to(src / "self.png")  # a loop: following it fails
    os.mkfifo(tmp_path / "pipe")
    (src / "pipe.png").symlink_to(tmp_path / "pipe")  # reading it would block forever
    found = [p.relative_to(src).as_posix() for p in find_images(src)]
    assert found == ["a/a.png", "b/b.png", "c/c.png", "self.png"]
    assert "cannot read" in probe_image(src / "self.png")
    linked_only = tmp_path / "linked"
    _png(tmp_path / "real" / "x.png")
    (linked_only / "sub").mkdir(parents=True)
    (linked_only / "sub" / "to-real").symlink_to(tmp_path / "real")
    (linked_only / "again").symlink_to(tmp_path / "real")
    assert [p.relative_to(linked_only).as_posix() for p in find_images(linked_only)] == ["again/x.png"]


def test_a_heic_photo_without_its_plugin_is_listed_and_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(imageio, "HEIC_READABLE", False)
    (tmp_path / "phone.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    assert find_images(tmp_path) == [tmp_path / "phone.HEIC"]
    assert "pip install pillow-heif" in probe_image(tmp_path / "phone.HEIC")


def test_probe_reads_headers_only_and_names_what_is_wrong(tmp_path):
    good = _png(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert probe_image(good) is None
    assert "cannot identify image file" in probe_image(tmp_path / "bad.jpg")


def test_sixteen_bit_colour_is_read_as_its_high_bytes_with_a_note(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 2**16, (6, 7, 3)).astype(np.uint16)
    _png16(tmp_path / "deep.png", rgb)
    picture = load_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(picture.pixels, rgb >> 8)
    assert picture.meta["note"] == "16-bit colour reduced to 8 bits (high bytes) before protecting"
    assert "note" not in load_image(_png(tmp_path / "plain.png")).meta
    grey_alpha = np.random.default_rng(2).integers(0, 2**16, (5, 4, 2)).astype(np.uint16)
    _png16(tmp_path / "la.png", grey_alpha)  # PIL opens it as RGBA: it must stay grey
    picture = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(picture.pixels[:, :, 0], grey_alpha[:, :, 0] >> 8)
    np.testing.assert_array_equal(picture.alpha, grey_alpha[:, :, 1] >> 8)
    assert picture.pixels.shape == (5, 4, 1) and "16-bit greyscale" in picture.meta["note"]


def test_a_very_large_image_gets_a_note_and_a_log_line_instead_of_a_raw_warning(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 120 pixels: over the limit, under twice it
    path = _png(tmp_path / "big.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's own DecompressionBombWarning would fail here
        with caplog.at_level(logging.WARNING, logger="protect.imageio"):
            picture = load_image(path)
    assert "megapixels, over PIL's decompression-bomb warning limit of 0: read" in picture.meta["note"]
    assert "megapixels" in caplog.text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode_pixels(encode(picture, "jpeg"), picture)  # our own saved copy is read back without a warning
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # over twice the limit: refused unread
    assert "too large to decode safely" in probe_image(path)


def test_a_palette_image_expands_to_rgb_silently_and_exactly(tmp_path, caplog):
    rgb = np.random.default_rng(2).integers(0, 4, (8, 8, 3), dtype=np.uint8) * 60
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        expected = np.asarray(im.convert("RGB"))
    with caplog.at_level(logging.WARNING):
        picture = load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(picture.pixels, expected)
    assert "note" not in picture.meta and not caplog.records


def test_lossy_webp_keeps_the_colour_under_transparent_pixels():
    """libwebp replaces invisible colour by default; without `exact` the left half changes by ~120 levels."""
    y, x = np.mgrid[0:64, 0:64]
    rgb = np.stack([x * 4, y * 4, (x + y) * 2], -1).astype(np.uint8)
    alpha = np.full((64, 64), 255, np.uint8)
    alpha[:, :32] = 0
    picture = Picture(rel=PurePosixPath("a.png"), pixels=rgb, alpha=alpha)
    data = encode(picture, "webp", 95)
    assert np.abs(decode_pixels(data, picture).astype(int) - rgb)[:, :32].max() <= 12


def test_each_format_gets_what_it_can_hold_with_a_note():
    rgb = np.full((4, 4, 3), 100, np.uint8)
    alpha = np.zeros((4, 4), np.uint8)
    clear = fit_format(
        Picture(rel=PurePosixPath("c.png"), pixels=rgb, alpha=alpha, meta={"note": "n"}), "jpeg"
    )
    assert clear.alpha is None and (clear.pixels == 255).all()
    assert clear.meta["note"] == "n; alpha flattened onto white (JPEG has no alpha channel)"
    grey = Picture(rel=PurePosixPath("g.png"), pixels=rgb[:, :, :1], icc=b"x" * 20)
    webp = fit_format(grey, "webp")
    assert (
        webp.icc is None
        and webp.meta["note"] == "WebP has no greyscale: saved as RGB, its GRAY ICC profile dropped"
    )
    assert fit_format(grey, "png") is grey


@pytest.mark.parametrize("shape", [(7, 7, 3), (300, 70, 3), (9, 5000, 1), (40, 41, 3)])
def test_quality_numbers_in_strips_equal_the_whole_image_ones(shape, monkeypatch):
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-8, 9, shape), 0, 255).astype(np.uint8)
    c = np.clip(b.astype(int) + rng.integers(-3, 4, shape), 0, 255).astype(np.uint8)
    whole = structural_similarity(a, b, channel_axis=-1, data_range=255, win_size=7)
    d = b.astype(float) - a
    kept = float(((c.astype(float) - a) * d).sum() / (d**2).sum())
    monkeypatch.setattr(metrics, "STRIP_PIXELS", 500)  # many strips, some one row high
    assert metrics.ssim(a, b) == pytest.approx(whole, abs=1e-12)
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (d**2).mean()), abs=1e-9)
    assert metrics.linf(a, b) == np.abs(d).max()
    assert metrics.perturbation_kept(a, b, c) == pytest.approx(kept, abs=1e-12)


def test_an_empty_folder_is_one_line_and_leaves_nothing_behind(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    res = CliRunner().invoke(cli, ["images", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), *FAST])
    assert res.exit_code == 2 and "no images (jpg, jpeg, png" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_dry_run_names_the_files_it_would_skip(tmp_path):
    src = tmp_path / "src"
    _png(src / "a.png")
    _png(src / "b.png", 1)
    (src / "a.jpg").write_bytes(b"garbage")  # unreadable, yet it still takes part in the output plan
    res = CliRunner().invoke(cli, ["images", str(src), "--out", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "would protect 2 file(s)" in res.output
    assert f"a.png -> {tmp_path / 'o' / 'a.png.png'}" in res.output
    assert f"would skip {src / 'a.jpg'}: cannot read" in res.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "o-report").exists()


def test_a_linked_folder_is_protected_and_a_dangling_link_is_reported(tmp_path):
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    for i in range(3):
        _png(src / f"{i}.png", i)
        _png(elsewhere / f"{i}.png", 10 + i)
    (src / "more").symlink_to(elsewhere)
    os.symlink(tmp_path / "nowhere.png", src / "dangling.png")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["images", str(src), "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out-report" / "protect-report.json").read_text())
    assert sorted(r["file"] for r in report["images"]) == [
        *(f"{i}.png" for i in range(3)),
        *(f"more/{i}.png" for i in range(3)),
    ]
    assert [s["source"] for s in report["skipped"]] == [str(src / "dangling.png")]
    assert not (out / "more").is_symlink() and (out / "more" / "0.png").is_file()
