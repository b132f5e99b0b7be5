"""T2UE's local apply step and caption files: bound after 8-bit rounding, originals untouched, one-line errors."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction

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
    assert (tmp_path / "out-report" / "protect-report.json").exists()
    with pytest.raises(ConfigError, match="inside the source"):
        apply_noise(tmp_path / "noise.npz", photos, photos / "out")
    assert _digest(photos) == before


def test_noise_file_is_float16_and_never_grows_a_value(tmp_path):
    rng = np.random.default_rng(4)
    delta = rng.uniform(-8 / 255, 8 / 255, (4, 16, 16, 3)).astype(np.float32)
    delta[0, 0, 0] = [8 / 255, -8 / 255, 0.0]  # the bound itself must survive the rounding
    NoiseSet(delta=delta, captions=list("abcd")).save(tmp_path / "n.npz")
    with np.load(tmp_path / "n.npz") as d:
        assert d["delta"].dtype == np.float16
    loaded = NoiseSet.load(tmp_path / "n.npz").delta
    assert loaded.dtype == np.float32 and (np.abs(loaded) <= np.abs(delta)).all()
    assert np.abs(loaded - delta).max() * 255 < 0.008  # of one 8-bit level
    pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    moved = np.stack([add_noise(pixels, a, 8 / 255).astype(int) for a in delta])
    moved -= np.stack([add_noise(pixels, b, 8 / 255).astype(int) for b in loaded])
    # a pixel changes only where float32 sat within 0.008 of the half between two levels, and by one level
    assert np.abs(moved).max() <= 1 and np.count_nonzero(moved) < 0.02 * moved.size


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


def test_classwise_noise_maps_a_repeated_class_name_to_its_noise(tmp_path):
    x = np.full((4, 8, 8, 3), 100, np.uint8)
    classes = np.array(["crane", "maillot", "crane", "dog"])  # ImageNet-1k's short names repeat "crane"
    np.savez(tmp_path / "data.npz", x=x, y=np.array([0, 1, 2, 3]), classes=classes)
    delta = np.stack([np.full((8, 8, 3), v / 255, np.float32) for v in (2, 3, 4)])
    noise = NoiseSet(delta=delta, captions=["crane", "maillot", "dog"], classes=["crane", "maillot", "dog"])
    assert apply_noise(noise, tmp_path / "data.npz", tmp_path / "prot.npz") == 0
    with np.load(tmp_path / "prot.npz") as d:
        assert [int(v) - 100 for v in d["x"][:, 0, 0, 0]] == [2, 3, 2, 4]


@pytest.mark.parametrize(
    ("y", "classes", "message"),
    [
        (np.array([0.0, 1.0, 2.5]), None, "labels 'y' must be integers"),
        (np.array([True, False, True]), None, "labels 'y' must be integers"),
        (np.array(["a", "b", "c"]), None, "labels 'y' must be integers"),
        (np.array([0, 1, 99]), None, r"labels must lie in 0..2, found 0..99"),
        (np.array([0, -1, 1]), None, r"labels must lie in 0..2"),
        (np.array([0, 1, 1]), np.array(["a"]), r"labels must lie in 0..0"),
        (np.array([0, 1, 1]), np.array("ab"), "'classes' must be a list of texts"),
    ],
)
def test_classwise_noise_refuses_labels_it_cannot_look_up(tmp_path, y, classes, message):
    extra = {} if classes is None else {"classes": classes}
    np.savez(tmp_path / "data.npz", x=np.zeros((3, 8, 8, 3), np.uint8), y=y, **extra)
    noise = NoiseSet(delta=np.zeros((3, 8, 8, 3), np.float32), captions=list("abc"), classes=list("abc"))
    with pytest.raises(ConfigError, match=message):
        apply_noise(noise, tmp_path / "data.npz", tmp_path / "prot.npz")
    assert not (tmp_path / "prot.npz").exists()


def test_captions_csv_with_any_line_ending(tmp_path):
    for name, end in (("cr.csv", "\r"), ("crlf.csv", "\r\n"), ("lf.csv", "\n")):
        (tmp_path / name).write_bytes(end.join(["file,caption", "a.png,a cat", 'b.png,"a dog"', ""]).encode())
        table = read_captions(tmp_path / name, require_file=True)
        assert (table.files, table.captions) == (["a.png", "b.png"], ["a cat", "a dog"]), name


def test_caption_arrays_are_read_as_text(tmp_path):
    from unlearnable.t2ue.data import load_pairs

    x = np.zeros((2, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "bytes.npz", x=x, captions=np.array([b"a cat", b"a dog"]))
    assert load_pairs(tmp_path / "bytes.npz", size=8)[1] == ["a cat", "a dog"]  # not "b'a cat'"
    np.savez(tmp_path / "column.npz", x=x, captions=np.array([["a cat"], ["a dog"]]))  # (N, 1), like y may be
    assert load_pairs(tmp_path / "column.npz", size=8)[1] == ["a cat", "a dog"]  # not "['a cat']"
    for captions, message in (
        (np.array("one caption"), r"\(\)"),
        (np.array([["a", "b"], ["c", "d"]]), r"\(2, 2\)"),
    ):
        np.savez(tmp_path / "odd.npz", x=x, captions=captions)
        with pytest.raises(ConfigError, match="'captions' must be a list of texts, got shape " + message):
            load_pairs(tmp_path / "odd.npz", size=8)


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


def _noise(delta, files=("cat/p0.png", "cat/p1.png", "dog/p2.png"), **meta):
    delta = np.asarray(delta, np.float32)
    return NoiseSet(delta=delta, captions=[f"c{i}" for i in range(len(delta))], files=list(files), meta=meta)


def _apply(tmp_path, noise_path, src, *extra, out="out"):
    return CliRunner().invoke(
        cli, ["t2ue", "apply", str(noise_path), str(src), "--out", str(tmp_path / out), *extra]
    )


def _one_line_error(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def _images_in(folder):
    return sorted(p.name for p in folder.rglob("*.png")) if folder.exists() else []


@pytest.mark.parametrize(
    "value,meta_eps,cap,message",
    [
        (0.5, 0.5, None, "exceeds the cap"),  # the file's own bound is not trusted
        (0.5, None, None, "up to 127.50/255, above the cap"),
        (2 / 255, 1.0, None, "bound 255.00/255 exceeds the cap"),  # an honest delta, a lying bound
        (8 / 255, 8 / 255, "2/255", "exceeds the cap --epsilon 2.00/255"),
    ],
)
def test_apply_refuses_noise_above_the_local_cap(photos, tmp_path, value, meta_eps, cap, message):
    meta = {} if meta_eps is None else {"eps": meta_eps}
    _noise(np.full((3, 16, 16, 3), value), **meta).save(tmp_path / "n.npz")
    before = _digest(photos)
    result = _apply(tmp_path, tmp_path / "n.npz", photos, *(["--epsilon", cap] if cap else []))
    assert result.exit_code == 2 and message in _one_line_error(result)
    assert _images_in(tmp_path / "out") == [] and _digest(photos) == before
    with pytest.raises(ConfigError, match="exceeds the cap|above the cap"):
        apply_noise(
            tmp_path / "n.npz", photos, tmp_path / "lib", eps=float(Fraction(cap)) if cap else 8 / 255
        )


def test_apply_with_a_raised_cap_accepts_larger_noise(photos, tmp_path):
    _noise(np.full((3, 16, 16, 3), 16 / 255), eps=16 / 255).save(tmp_path / "n.npz")
    result = _apply(tmp_path, tmp_path / "n.npz", photos, "--epsilon", "16/255")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out-report" / "protect-report.json").read_text())
    assert max(r["linf"] for r in report["images"]) == 16


def test_saved_change_stays_within_the_cap_after_rounding():
    rng = np.random.default_rng(4)
    pixels = rng.integers(20, 230, (16, 16, 3), dtype=np.uint8)
    delta = rng.choice([-0.03, 0.03], size=(16, 16, 3)).astype(np.float32)  # 0.03 = 7.65/255
    change = np.abs(add_noise(pixels, delta, 0.03).astype(int) - pixels.astype(int))
    assert change.max() == 7  # rounding 7.65 up to 8 would exceed the cap


def test_apply_refuses_non_finite_noise(photos, tmp_path):
    delta = np.full((3, 16, 16, 3), 4 / 255, np.float32)
    delta[1, 3, 4, 0] = np.nan
    _noise(delta, eps=8 / 255).save(tmp_path / "n.npz")
    result = _apply(tmp_path, tmp_path / "n.npz", photos)
    assert "NaN" in _one_line_error(result)
    assert _images_in(tmp_path / "out") == []
    with pytest.raises(IntegrityError, match="NaN"):
        add_noise(np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), np.inf, np.float32), 8 / 255)


def test_apply_bad_noise_files_are_one_line(photos, tmp_path):
    good = tmp_path / "good.npz"
    _noise(np.full((3, 16, 16, 3), 4 / 255), eps=8 / 255).save(good)
    (tmp_path / "trunc.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    np.savez(tmp_path / "text_eps.npz", delta=np.zeros((3, 16, 16, 3), np.float32), meta_eps=np.array("big"))
    np.savez(tmp_path / "zero_h.npz", delta=np.zeros((3, 0, 16, 3), np.float32))
    with open(tmp_path / "bare.npz", "wb") as fh:  # np.save under an .npz name: np.load gives a bare array
        np.save(fh, np.zeros((3, 16, 16, 3), np.float32))
    for name, message in [
        ("trunc.npz", "cannot read noise file"),
        ("empty.npz", "cannot read noise file"),
        ("text_eps.npz", "meta_eps is not a number"),
        ("zero_h.npz", "N, H, W > 0"),
        ("bare.npz", "single .npy array, not an .npz archive"),
    ]:
        result = _apply(tmp_path, tmp_path / name, photos, out=f"out-{name}")
        assert message in _one_line_error(result), name


def test_resume_refuses_regenerated_noise_and_another_cap(photos, tmp_path):
    rng = np.random.default_rng(5)
    first = rng.uniform(-4 / 255, 4 / 255, (3, 16, 16, 3))
    _noise(first, eps=8 / 255).save(tmp_path / "n.npz")
    assert _apply(tmp_path, tmp_path / "n.npz", photos).exit_code == 0
    assert _apply(tmp_path, tmp_path / "n.npz", photos, "--resume").exit_code == 0
    _noise(-first, eps=8 / 255).save(tmp_path / "n.npz")  # same path, other noise
    result = _apply(tmp_path, tmp_path / "n.npz", photos, "--resume")
    assert result.exit_code == 2 and "noise_sha256" in _one_line_error(result)
    _noise(first, eps=8 / 255).save(tmp_path / "n.npz")
    result = _apply(tmp_path, tmp_path / "n.npz", photos, "--resume", "--epsilon", "10/255")
    assert result.exit_code == 2 and "epsilon" in _one_line_error(result)


def test_resized_noise_is_noted_per_image_and_warned(photos, tmp_path):
    _noise(np.full((3, 16, 16, 3), 4 / 255), eps=8 / 255).save(tmp_path / "n.npz")
    result = _apply(tmp_path, tmp_path / "n.npz", photos)
    assert result.exit_code == 0, result.output
    assert "resized to fit 2 image(s)" in result.stderr
    notes = {
        r["file"]: r.get("note")
        for r in json.loads((tmp_path / "out-report" / "protect-report.json").read_text())["images"]
    }
    assert notes == {
        "cat/p0.png": "noise 16x16 resized to 20x24",
        "cat/p1.png": None,
        "dog/p2.png": "noise 16x16 resized to 32x30",
    }


def test_captions_row_with_an_unquoted_comma_is_refused(tmp_path):
    path = _write(tmp_path / "c.csv", "file,caption\nimg0.png,a cat\nimg1.png,a dog,extra\n")
    with pytest.raises(ConfigError, match=r"line 3: 3 fields, expected 2; .*quoted"):
        read_captions(path)
    quoted = read_captions(_write(tmp_path / "q.csv", 'file,caption\nimg1.png,"a dog, extra"\n'))
    assert quoted.captions == ["a dog, extra"]


def test_caption_file_paths_are_normalised(tmp_path, photos):
    table = read_captions(
        _write(tmp_path / "c.csv", "file,caption\n./a.png,x\nsub\\b.png,y\n./c/./d.png,z\n")
    )
    assert table.files == ["a.png", "sub/b.png", "c/d.png"]
    for text, message in [
        ("./a.png,x\na.png,y\n", "'a.png' is listed more than once"),
        ("/etc/a.png,x\n", "line 2: file '/etc/a.png' is an absolute path"),
        ("C:\\a.png,x\n", "absolute path"),
        ("sub/../../a.png,x\n", "line 2: .*outside the image folder"),
    ]:
        with pytest.raises(ConfigError, match=message):
            read_captions(_write(tmp_path / "bad.csv", "file,caption\n" + text))
    # noise files written elsewhere are matched the same way
    files = ["./cat/p0.png", "cat\\p1.png", "dog/p2.png"]
    _noise(np.full((3, 16, 16, 3), 4 / 255), files=files, eps=8 / 255).save(tmp_path / "n.npz")
    assert apply_noise(tmp_path / "n.npz", photos, tmp_path / "out") == 0
    report = json.loads((tmp_path / "out-report" / "protect-report.json").read_text())
    assert len(report["images"]) == 3 and not report["skipped"]


def test_noise_entries_that_match_no_image_are_warned(tmp_path, photos, caplog):
    files = ["cat/p0.png", "cat/p1.png", "dog/p2.png", "bird/p3.png"]
    _noise(np.full((4, 16, 16, 3), 4 / 255), files=files, eps=8 / 255).save(tmp_path / "n.npz")
    with caplog.at_level("WARNING"):
        assert apply_noise(tmp_path / "n.npz", photos, tmp_path / "out") == 0
    assert "1 of 4 noise entries match no image" in caplog.text and "'bird/p3.png'" in caplog.text
    caplog.clear()
    _noise(np.full((3, 16, 16, 3), 4 / 255), eps=8 / 255).save(tmp_path / "n.npz")
    with caplog.at_level("WARNING"):
        assert apply_noise(tmp_path / "n.npz", photos, tmp_path / "out2") == 0
    assert "match no image" not in caplog.text


def test_captions_path_that_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="cannot read captions file"):
        read_captions(tmp_path)


def test_an_unterminated_quote_is_refused_not_swallowed(tmp_path):
    path = _write(tmp_path / "q.csv", 'file,caption\nimg01.png,"unterminated\nimg02.png,c\nimg03.png,d\n')
    with pytest.raises(ConfigError, match="unexpected end of data"):
        read_captions(path)


@pytest.mark.parametrize("template", ["a {} and {}", "a {} {", "a {} {x}", "no slot"])
def test_a_class_template_needs_exactly_one_slot(tmp_path, template):
    args = ["t2ue", "noise", "--classes", "cat,dog", "--template", template]
    args += ["--generator", str(tmp_path), "--size", "8x8", "--out", str(tmp_path / "n.npz")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "exactly one '{}'" in _one_line_error(res), res.output


def test_classwise_noise_on_a_flat_folder_says_why_each_image_is_skipped(tmp_path):
    src = tmp_path / "flat"
    src.mkdir()
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(src / "a.png")
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(src / "b.png")
    noise = NoiseSet(
        delta=np.zeros((2, 8, 8, 3), np.float32), captions=["cat", "dog"], classes=["cat", "dog"]
    )
    noise.save(tmp_path / "n.npz")
    res = CliRunner().invoke(
        cli, ["t2ue", "apply", str(tmp_path / "n.npz"), str(src), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2
    assert (
        "lies in no class sub-folder, and class-wise noise is applied by folder name (cat, dog)" in res.output
    )
    assert "None" not in res.output


def test_a_file_name_matches_across_unicode_normal_forms(tmp_path):
    """macOS stores 'é' as e + U+0301 (NFD); a spreadsheet's CSV holds U+00E9 (NFC): the photo was skipped."""
    import unicodedata

    src = tmp_path / "photos"
    src.mkdir()
    name = unicodedata.normalize("NFD", "café.png")
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(src / name)
    noise = NoiseSet(
        delta=np.full((1, 8, 8, 3), 4 / 255, np.float32),
        captions=["a cup"],
        files=[unicodedata.normalize("NFC", "café.png")],
        meta={"eps": 8 / 255},
    )
    noise.save(tmp_path / "noise.npz")
    assert apply_noise(tmp_path / "noise.npz", src, tmp_path / "out") == 0
    report = json.loads((tmp_path / "out-report" / "protect-report.json").read_text())
    assert len(report["images"]) == 1 and report["skipped"] == []
