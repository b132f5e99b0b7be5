"""`protect images` end to end on tiny files: guarantees about originals, metadata, reports, errors and resume."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from protect.cli import cli

FAST = ["--steps", "1", "--resolution", "16", "--device", "cpu"]


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def photos(tmp_path):
    """Two class folders, an RGBA PNG, a greyscale PNG, an EXIF-rotated JPEG with GPS, and a corrupt file."""
    rng = np.random.default_rng(0)
    src = tmp_path / "photos"
    for cls in ("cats", "dogs"):
        (src / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(src / cls / f"{i}.png")
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(src / "cats" / "alpha.png")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8), "L").save(src / "dogs" / "grey.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise for display
    exif.get_ifd(0x8825)[2] = (52.0, 22.0, 0.0)  # GPS latitude
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
        src / "cats" / "rot.jpg", exif=exif
    )
    (src / "dogs" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return src


def run(args):
    return CliRunner().invoke(cli, ["images", *args], catch_exceptions=False)


def test_protect_folder_end_to_end(photos, tmp_path):
    before = digest(photos)
    out = tmp_path / "out"
    res = run([str(photos), "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    assert digest(photos) == before  # originals untouched, byte for byte
    report = json.loads((out / "protect-report.json").read_text())
    assert report["summary"]["protected"] == 9 and report["summary"]["skipped"] == 1
    assert report["skipped"][0]["source"].endswith("broken.jpg")
    assert (out / "report.html").read_text().count("<img") == 27
    for row in report["images"]:
        assert set(row) >= {"source", "output", "width", "height", "psnr", "ssim", "linf"}
        assert row["linf"] <= 8
        orig = np.asarray(Image.open(row["source"]).convert("RGB"), dtype=int)
        saved = np.asarray(Image.open(row["output"]).convert("RGB"), dtype=int)
        if not row["source"].endswith("rot.jpg"):
            assert np.abs(orig - saved).max() == row["linf"] <= 8
    # mirrored paths, .png outputs
    assert (out / "cats" / "0.png").exists() and (out / "dogs" / "grey.png").exists()
    # alpha untouched, greyscale kept greyscale
    a_in, a_out = Image.open(photos / "cats" / "alpha.png"), Image.open(out / "cats" / "alpha.png")
    assert a_out.mode == "RGBA" and np.array_equal(np.asarray(a_in)[..., 3], np.asarray(a_out)[..., 3])
    assert Image.open(out / "dogs" / "grey.png").mode == "L"
    # EXIF orientation applied to the pixels, EXIF (GPS included) stripped by default
    rot = Image.open(out / "cats" / "rot.png")
    assert rot.size == (20, 24) and len(rot.getexif()) == 0


def test_keep_exif_keeps_metadata_but_not_orientation(photos, tmp_path):
    out = tmp_path / "out"
    assert run([str(photos), "--out", str(out), "--keep-exif", *FAST]).exit_code == 0
    exif = Image.open(out / "cats" / "rot.png").getexif()
    assert exif.get(0x0112) in (None, 1) and 0x8825 in exif


def test_destination_inside_source_is_refused(photos):
    res = CliRunner().invoke(cli, ["images", str(photos), "--out", str(photos / "sub"), *FAST])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1].startswith("Error: --out")


def test_nothing_readable_exits_2(tmp_path):
    src = tmp_path / "bad"
    src.mkdir()
    (src / "a.png").write_bytes(b"garbage")
    res = run([str(src), "--out", str(tmp_path / "o"), *FAST])
    assert res.exit_code == 2 and "skipped" in res.output


def test_bad_epsilon_is_one_clear_line(photos, tmp_path):
    res = CliRunner().invoke(cli, ["images", str(photos), "--out", str(tmp_path / "o"), "--epsilon", "2"])
    assert res.exit_code == 2 and "must lie in (0, 1]" in res.output


def test_resume_redoes_only_unfinished_files(photos, tmp_path):
    out = tmp_path / "out"
    assert run([str(photos), "--out", str(out), *FAST]).exit_code == 0
    done = out / "cats" / "0.png"
    stamp = done.stat().st_mtime_ns
    (out / "dogs" / "1.png").unlink()  # as if the run had been killed before writing it
    with open(out / ".protect-progress.jsonl", "a") as fh:
        fh.write('{"source": "cut off')  # a line cut by the kill
    res = run([str(photos), "--out", str(out), "--resume", *FAST])
    assert res.exit_code == 0, res.output
    assert (out / "dogs" / "1.png").exists() and done.stat().st_mtime_ns == stamp
    report = json.loads((out / "protect-report.json").read_text())
    assert report["summary"]["protected"] == 9


def test_jpeg_output_reports_what_reencoding_keeps(photos, tmp_path):
    out = tmp_path / "out"
    assert run([str(photos / "dogs"), "--out", str(out), "--format", "jpeg", *FAST]).exit_code == 0
    rows = json.loads((out / "protect-report.json").read_text())["images"]
    # JPEG re-encoding changes the saved perturbation: the report says how much of it survives, and the
    # measured change (linf) is that of the saved file, not the intended one
    assert all(np.isfinite(r["perturbation_kept"]) for r in rows)
    assert any(r["linf"] > 8 for r in rows)
    assert (out / "0.jpg").exists()


@pytest.mark.parametrize("method", ["beo", "em", "em-class", "adv"])
def test_npz_round_trip(tmp_path, method):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    y = np.arange(24) % 3
    src = tmp_path / "data.npz"
    np.savez(src, x=x, y=y, classes=np.array(["a", "b", "c"]))
    out = tmp_path / "prot.npz"
    res = run([str(src), "--out", str(out), "--method", method, "--steps", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    with np.load(out) as d:
        assert d["x"].shape == x.shape and d["x"].dtype == np.uint8
        assert np.array_equal(d["y"], y) and list(d["classes"]) == ["a", "b", "c"]
        change = np.abs(d["x"].astype(int) - x)
        assert 0 < change.max() <= 8
        if method == "em-class":  # one perturbation per class (up to clipping at 0 and 255)
            delta = d["x"].astype(int) - x
            inside = (x > 8) & (x < 247)
            for c in range(3):
                members = np.flatnonzero(y == c)
                both = inside[members[0]] & inside[members[1]]
                assert np.array_equal(delta[members[0]][both], delta[members[1]][both])
    assert (tmp_path / "prot-report" / "protect-report.json").exists()


def test_dry_run_writes_nothing(photos, tmp_path):
    res = run([str(photos), "--out", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code == 0 and "would protect 10 file(s)" in res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("torchvision:resnet18", "Error: cannot fetch torchvision resnet18 weights"),
        ("open_clip:RN50:nonexistent", "Error: open_clip RN50 has no pretrained tag 'nonexistent'"),
        ("bogus", "Error: unknown surrogate 'bogus'"),
    ],
)
def test_surrogate_errors_are_one_line_when_offline(photos, tmp_path, monkeypatch, spec, message):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-cache"))  # nothing cached
    res = CliRunner().invoke(
        cli, ["images", str(photos), "--out", str(tmp_path / "o"), "--surrogate", spec, *FAST]
    )
    assert res.exit_code in (1, 2)
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(message)
