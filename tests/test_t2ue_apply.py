"""T2UE's local apply step and caption files: bound after 8-bit rounding, originals untouched, one-line errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from protect.cli import cli
from protect.errors import ConfigError, IntegrityError
from unlearnable.t2ue import NoiseSet, add_noise, apply_noise, read_captions


def _digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "photos"
    (src / "cat").mkdir(parents=True)
    (src / "dog").mkdir()
    for i, (folder, size) in enumerate([("cat", (20, 24)), ("cat", (16, 16)), ("dog", (32, 30))]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(src / folder / f"p{i}.png")
    (src / "captions.csv").write_text(
        "file,caption\ncat/p0.png,a cat\ncat/p1.png,a cat asleep\ndog/p2.png,a dog\n", encoding="utf-8"
    )
    return src


def test_add_noise_bound_after_rounding_and_resizing():
    rng = np.random.default_rng(1)
    eps = 8 / 255
    pixels = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    pixels[0, 0] = 0
    pixels[0, 1] = 255
    delta = rng.choice([-eps, eps], size=(16, 16, 3)).astype(np.float32)
    out = add_noise(pixels, delta, eps)
    change = np.abs(out.astype(int) - pixels.astype(int))
    assert out.dtype == np.uint8 and change.max() <= 8 and change.max() >= 7
    grey = add_noise(pixels[:, :, :1], delta, eps)
    assert grey.shape == (37, 23, 1)
    with pytest.raises(IntegrityError, match="exceeds"):
        add_noise(pixels, delta * 3, eps)


def test_apply_never_touches_originals(photos, tmp_path):
    before = _digest(photos)
    rng = np.random.default_rng(2)
    noise = NoiseSet(
        delta=rng.uniform(-8 / 255, 8 / 255, (3, 16, 16, 3)).astype(np.float32),
        captions=["a cat", "a cat asleep", "a dog"],
        files=["cat/p0.png", "cat/p1.png", "dog/p2.png"],
        meta={"eps": 8 / 255},
    )
    noise.save(tmp_path / "noise.npz")
    assert apply_noise(tmp_path / "noise.npz", photos, tmp_path / "out") == 0
    assert _digest(photos) == before
    for rel in ["cat/p0.png", "cat/p1.png", "dog/p2.png"]:
        a = np.asarray(Image.open(photos / rel), dtype=int)
        b = np.asarray(Image.open(tmp_path / "out" / rel), dtype=int)
        assert a.shape == b.shape and 0 < np.abs(a - b).max() <= 8
    assert (tmp_path / "out" / "protect-report.json").exists()
    with pytest.raises(ConfigError, match="inside the source"):
        apply_noise(tmp_path / "noise.npz", photos, photos / "out")
    assert _digest(photos) == before


def test_classwise_noise_by_label_on_npz(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "data.npz", x=x, y=y, classes=np.array(["a", "b", "c"]))
    delta = np.stack([np.full((8, 8, 3), v, np.float32) for v in (-4 / 255, 0.0, 4 / 255)])
    noise = NoiseSet(
        delta=delta[::-1].copy(), captions=["c", "b", "a"], classes=["c", "b", "a"], meta={"eps": 4 / 255}
    )
    assert apply_noise(noise, tmp_path / "data.npz", tmp_path / "prot.npz") == 0
    with np.load(tmp_path / "prot.npz") as d:
        diff = d["x"].astype(int) - x.astype(int)
        np.testing.assert_array_equal(d["y"], y)
    interior = (x > 8) & (x < 247)
    assert (diff[y == 0][interior[y == 0]] == -4).all() and (diff[y == 2][interior[y == 2]] == 4).all()
    assert (diff[y == 1] == 0).all()


def test_captions_file_errors(tmp_path):
    bad = {
        "missing.csv": (b"file,text\na.png,a cat\n", "needs the column(s) caption"),
        "empty.csv": (b"file,caption\na.png,a cat\nb.png,  \n", "line 3: empty caption"),
        "latin1.csv": ("file,caption\na.png,un caf\xe9\n".encode("latin-1"), "not UTF-8"),
    }
    for name, (data, message) in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_captions(tmp_path / name)
    table = read_captions(_write(tmp_path / "ok.csv", "\ufefffile,Caption\na.png, a  cat \n"))
    assert table.captions == ["a cat"] and table.files == ["a.png"]


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "content,message",
    [
        (b"file,text\na.png,a cat\n", "Error: "),
        (b"file,caption\na.png,\n", "Error: "),
        (b"file,caption\na.png,\xff\xfe\n", "Error: "),
    ],
)
def test_cli_bad_captions_one_line(tmp_path, content, message):
    (tmp_path / "gen").mkdir()
    (tmp_path / "c.csv").write_bytes(content)
    result = CliRunner().invoke(
        cli,
        [
            "t2ue",
            "noise",
            str(tmp_path / "c.csv"),
            "--generator",
            str(tmp_path / "gen"),
            "--size",
            "8x8",
            "--out",
            str(tmp_path / "n.npz"),
        ],
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    assert not (tmp_path / "n.npz").exists()
