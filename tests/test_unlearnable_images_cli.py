"""`protect images` end to end on tiny files: guarantees about originals, metadata, reports, errors and resume."""

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
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
    report = json.loads((out.with_name(out.name + "-report") / "protect-report.json").read_text())
    assert report["summary"]["protected"] == 9 and report["summary"]["skipped"] == 1
    assert report["skipped"][0]["source"].endswith("broken.jpg")
    assert (out.with_name(out.name + "-report") / "report.html").read_text().count("<img") == 27
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


def test_nothing_readable_exits_2(tmp_path, caplog):
    src = tmp_path / "bad"
    src.mkdir()
    (src / "a.png").write_bytes(b"garbage")
    res = run([str(src), "--out", str(tmp_path / "o"), *FAST])
    assert res.exit_code == 2 and res.output.count("skipped") == 1
    # listed once, in the summary: not also as a warning on stderr in the middle of the progress bar
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "skipped" in r.getMessage()]


def test_bad_epsilon_is_one_clear_line(photos, tmp_path):
    res = CliRunner().invoke(cli, ["images", str(photos), "--out", str(tmp_path / "o"), "--epsilon", "2"])
    assert res.exit_code == 2 and "must lie in (0, 1]" in res.output


def test_resume_redoes_only_unfinished_files(photos, tmp_path):
    out = tmp_path / "out"
    assert run([str(photos), "--out", str(out), *FAST]).exit_code == 0
    done = out / "cats" / "0.png"
    stamp = done.stat().st_mtime_ns
    (out / "dogs" / "1.png").unlink()  # as if the run had been killed before writing it
    with open(out.with_name("out-report") / ".protect-progress.jsonl", "a") as fh:
        fh.write('{"source": "cut off')  # a line cut by the kill
    half = out / "dogs" / ".1.png.0123abcd.tmp.png"  # the kill's half-written temporary file
    half.write_bytes(b"\x89PNG half")
    mine = [out / ".keep", out / "cats" / ".notes.tmp"]  # not ours: left alone
    for path in mine:
        path.write_text("user file")
    res = run([str(photos), "--out", str(out), "--resume", *FAST])
    assert res.exit_code == 0, res.output
    assert (out / "dogs" / "1.png").exists() and done.stat().st_mtime_ns == stamp
    assert not half.exists() and all(path.exists() for path in mine)
    report = json.loads((out.with_name(out.name + "-report") / "protect-report.json").read_text())
    assert report["summary"]["protected"] == 9


def test_jpeg_output_reports_what_reencoding_keeps(photos, tmp_path):
    out = tmp_path / "out"
    assert run([str(photos / "dogs"), "--out", str(out), "--format", "jpeg", *FAST]).exit_code == 0
    rows = json.loads((out.with_name(out.name + "-report") / "protect-report.json").read_text())["images"]
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
    assert res.exit_code == 0 and "would protect 9 file(s)" in res.output  # the real run protects 9 too
    assert "would skip" in res.output and "broken.jpg" in res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("torchvision:resnet18", "Error: cannot fetch pretrained weights for torchvision:resnet18"),
        ("open_clip:RN50:nonexistent", "Error: open_clip RN50 has no pretrained tag 'nonexistent'"),
        ("bogus", "Error: unknown surrogate 'bogus'"),
    ],
)
def test_surrogate_errors_are_one_line_when_offline(photos, tmp_path, spec, message):
    res = CliRunner().invoke(
        cli, ["images", str(photos), "--out", str(tmp_path / "o"), "--surrogate", spec, *FAST]
    )
    assert res.exit_code in (1, 2)
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(message)
    from protect import batch

    assert str((tmp_path / "o-report").resolve()) not in batch._HELD  # the failed run released its folder


def test_unusable_weights_cache_is_not_blamed_on_the_network(photos, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "weights").write_text("a file where the cache folder should be")
    monkeypatch.setenv("PROTECT_HOME", str(home))
    args = ["images", str(photos), "--out", str(tmp_path / "o"), "--surrogate", "torchvision:resnet18", *FAST]
    res = CliRunner().invoke(cli, args)
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert res.exit_code == 2 and len(errors) == 1
    assert errors[0].startswith("Error: cannot use the weights cache for torchvision:resnet18")
    assert "PROTECT_HOME" in errors[0] and not (tmp_path / "o").exists()


def test_beo_on_one_owners_photos_says_what_the_benchmark_measured(tmp_path):
    """A flat folder is one class: BEO runs against the bundled references, which measured no protection."""
    src = tmp_path / "mine"
    for i in range(3):
        save_random(src / f"{i}.png", seed=i)
    beo = CliRunner().invoke(cli, ["images", str(src), "--out", str(tmp_path / "b"), *FAST])
    assert beo.exit_code == 0 and "prefer --method em" in beo.stderr
    em = CliRunner().invoke(cli, ["images", str(src), "--out", str(tmp_path / "e"), "--method", "em", *FAST])
    assert em.exit_code == 0 and "prefer --method em" not in em.output


@pytest.mark.parametrize("chunk_images", [None, 2])
def test_class_folders_are_protected_against_each_other_in_every_chunk(
    photos, tmp_path, monkeypatch, chunk_images
):
    """Chunks (for memory) deal the classes round-robin: a one-class chunk would only see the reference images."""
    if chunk_images:
        monkeypatch.setattr("unlearnable.api.CHUNK_BYTES", chunk_images * 2 * 20 * 24 * 3)
    res = CliRunner().invoke(cli, ["images", str(photos), "--out", str(tmp_path / "o"), *FAST])
    assert res.exit_code == 0 and "prefer --method em" not in res.output
    runs = report_of(tmp_path / "o")["settings"]["runs"]
    assert len(runs) >= (3 if chunk_images else 1)
    assert all(run["reference_anchors"] == 0 and run["classes"] == ["cats", "dogs"] for run in runs[:-1])


def report_of(out: Path) -> dict:
    return json.loads((out.with_name(out.name + "-report") / "protect-report.json").read_text())


def save_random(path: Path, shape=(16, 16, 3), seed=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if shape[-1] == 1 else pixels).save(path)


def test_destination_containing_source_is_refused_and_originals_survive(tmp_path):
    """`par/p --out par` would mirror `par/p/p/x.png` onto the original `par/p/x.png`."""
    par = tmp_path / "par"
    save_random(par / "p" / "x.png", seed=1)
    save_random(par / "p" / "p" / "x.png", seed=2)
    before = digest(par)
    res = CliRunner().invoke(cli, ["images", str(par / "p"), "--out", str(par), *FAST])
    assert res.exit_code == 2
    assert (
        res.output.strip().splitlines()[-1].startswith("Error: --out") and "contains the source" in res.output
    )
    assert digest(par) == before


def test_same_stem_sources_get_distinct_outputs(tmp_path):
    src = tmp_path / "src"
    for i, name in enumerate(["a.jpg", "a.png", "b.png"]):
        save_random(src / name, seed=i)
    out = tmp_path / "out"
    planned = run([str(src), "--out", str(out), "--dry-run"]).output
    assert f"a.jpg -> {out / 'a.jpg.png'}" in planned and f"b.png -> {out / 'b.png'}" in planned
    assert run([str(src), "--out", str(out), *FAST]).exit_code == 0
    outputs = sorted(Path(r["output"]).name for r in report_of(out)["images"])
    assert outputs == ["a.jpg.png", "a.png.png", "b.png"]
    assert sorted(p.name for p in out.glob("*.png")) == outputs


def test_dry_run_t2ue_writes_nothing(photos, tmp_path):
    res = run([str(photos), "--out", str(tmp_path / "o"), "--method", "t2ue", "--dry-run"])
    assert res.exit_code == 0 and "would protect 9 file(s)" in res.output and "t2ue" in res.output
    assert not (tmp_path / "o").exists()


def test_16_bit_greyscale_is_rescaled_not_clipped(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    wide = np.linspace(0, 65535, 20 * 24).reshape(20, 24).astype(np.uint16)
    Image.fromarray(wide).save(src / "g16.png")
    save_random(src / "rgb.png")
    out = tmp_path / "out"
    assert run([str(src), "--out", str(out), *FAST]).exit_code == 0
    row = next(r for r in report_of(out)["images"] if r["source"].endswith("g16.png"))
    saved = Image.open(out / "g16.png")
    assert saved.mode == "L" and "16-bit" in row["note"]
    # the change against the true original (in 8-bit units) is eps plus at most half a level of rounding
    assert np.abs(np.asarray(saved, float) - wide / 257.0).max() <= row["linf"] + 0.5 <= 8.5


def test_float_image_out_of_range_is_skipped_with_a_reason(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.full((16, 16), 900.0, np.float32)).save(src / "f.tif")
    save_random(src / "rgb.png")
    out = tmp_path / "out"
    assert run([str(src), "--out", str(out), *FAST]).exit_code == 0
    (skipped,) = report_of(out)["skipped"]
    assert skipped["source"].endswith("f.tif") and "no defined 8-bit range" in skipped["reason"]


def test_decompression_bomb_is_skipped_not_a_traceback(tmp_path, monkeypatch):
    src = tmp_path / "src"
    save_random(src / "a" / "ok.png", seed=0)
    save_random(src / "b" / "ok.png", seed=1)  # two classes: no reference photos (which are large) to read
    save_random(src / "a" / "huge.png", shape=(64, 64, 3), seed=2)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1024)  # huge.png has 4096 > 2 x limit: PIL refuses it
    out = tmp_path / "out"
    res = run([str(src), "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    (skipped,) = report_of(out)["skipped"]
    assert skipped["source"].endswith("huge.png") and "too large" in skipped["reason"]


@pytest.mark.parametrize("case", ["out_is_file", "parent_is_file", "empty_npz"])
def test_unusable_outputs_and_empty_npz_are_one_line(tmp_path, case):
    src = tmp_path / "src"
    save_random(src / "a.png")
    afile = tmp_path / "afile"
    afile.write_text("x")
    if case == "empty_npz":
        src, out = tmp_path / "empty.npz", tmp_path / "o.npz"
        np.savez(src, x=np.zeros((0, 8, 8, 3), np.uint8))
    else:
        out = afile if case == "out_is_file" else afile / "sub"
    before = digest(tmp_path)
    res = CliRunner().invoke(cli, ["images", str(src), "--out", str(out), *FAST])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert digest(tmp_path) == before


def test_rgba_to_jpeg_is_flattened_and_noted(tmp_path):
    src = tmp_path / "src"
    save_random(src / "rgba.png", shape=(16, 16, 4))
    save_random(src / "rgb.png", seed=1)
    out = tmp_path / "out"
    res = run([str(src), "--out", str(out), "--format", "jpeg", *FAST])
    assert res.exit_code == 0, res.output
    rows = {Path(r["output"]).name: r for r in report_of(out)["images"]}
    assert set(rows) == {"rgba.jpg", "rgb.jpg"} and "alpha flattened onto white" in rows["rgba.jpg"]["note"]
    assert Image.open(out / "rgba.jpg").mode == "RGB"


def test_copies_identical_to_the_original_are_flagged_and_warned(tmp_path):
    """Four images in two classes: the surrogate separates them perfectly, the gradient is zero, nothing moves."""
    src = tmp_path / "src"
    for i, name in enumerate(["cat/a.png", "cat/b.png", "dog/c.png", "dog/d.png"]):
        save_random(src / name, seed=i)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["images", str(src), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    report = report_of(out)
    assert all(r["unchanged"] == (r["linf"] == 0) for r in report["images"])
    assert report["summary"]["unchanged"] == 4
    assert "protection did nothing for 4 of 4 image(s)" in res.stderr


def test_resume_keys_on_paths_relative_to_src(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(["photos", "--out", "out", *FAST]).exit_code == 0
    stamp = (tmp_path / "out" / "cats" / "0.png").stat().st_mtime_ns
    res = run([str(photos), "--out", str(tmp_path / "out"), "--resume", *FAST])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "cats" / "0.png").stat().st_mtime_ns == stamp  # nothing redone
    report = report_of(tmp_path / "out")
    assert report["summary"]["protected"] == 9 and len({r["file"] for r in report["images"]}) == 9


def test_resume_with_other_settings_is_refused(photos, tmp_path):
    out = tmp_path / "out"
    assert run([str(photos), "--out", str(out), *FAST]).exit_code == 0
    res = CliRunner().invoke(
        cli, ["images", str(photos), "--out", str(out), "--resume", "--epsilon", "4/255", *FAST]
    )
    assert res.exit_code == 2 and "settings differ" in res.output and "epsilon" in res.output


def test_the_release_folder_holds_only_the_protected_images(photos, tmp_path):
    """report.html shows the originals and the JSON their paths: both stay beside the release, not in it."""
    out = tmp_path / "out"
    assert run([str(photos), "--out", str(out), *FAST]).exit_code == 0
    assert {p.suffix for p in out.rglob("*") if p.is_file()} == {".png"}
    reports = tmp_path / "out-report"
    assert {p.name for p in reports.iterdir()} >= {"protect-report.json", "report.html"}


def test_reports_never_go_into_the_source(tmp_path):
    src = tmp_path / "photos-report"
    src.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "a.png")
    res = run([str(src), "--out", str(tmp_path / "photos"), *FAST])
    assert res.exit_code == 2 and "inside the source" in res.output
    assert [p.name for p in src.iterdir()] == ["a.png"]


def test_reports_of_a_dotdot_destination_go_beside_it(photos, tmp_path, monkeypatch):
    (tmp_path / "up" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "up" / "sub")
    assert run([str(photos), "--out", "..", *FAST]).exit_code == 0
    assert (tmp_path / "up-report" / "protect-report.json").is_file()
    assert not any(p.name.endswith("-report") for p in (tmp_path / "up").rglob("*"))


def test_resume_accepts_the_same_paths_spelled_differently(photos, tmp_path, monkeypatch):
    from protect.batch import CopyJob, WriteOptions

    monkeypatch.chdir(tmp_path)
    (tmp_path / "gen").mkdir()
    first = CopyJob(photos, tmp_path / "out", settings={"generator": "gen"}, options=WriteOptions())
    first.pending()  # records the run's settings
    first.finish()
    again = CopyJob(
        photos,
        tmp_path / "out",
        settings={"generator": str(tmp_path / "gen")},
        options=WriteOptions(resume=True),
    )
    again.pending()  # no "settings differ"
    again.finish()


@contextlib.contextmanager
def locked_by_another_process(folder: Path):
    """Hold an flock on `folder` from a subprocess, as a second protect run would."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the folder lock is POSIX only")
def test_a_second_process_cannot_write_into_the_same_output(photos, tmp_path):
    """Two runs into one folder would interleave their progress; the second one is refused in one line."""
    reports = tmp_path / "out-report"
    reports.mkdir()
    with locked_by_another_process(reports):
        res = run([str(photos), "--out", str(tmp_path / "out"), *FAST])
        assert res.exit_code == 2 and "another protect run is writing to" in res.output
    assert run([str(photos), "--out", str(tmp_path / "out"), *FAST]).exit_code == 0


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the folder lock is POSIX only")
def test_a_symlinked_out_is_the_same_output_for_the_lock(photos, tmp_path):
    """A run into `link` (-> `out`) would clear the temporary files of a live run into `out`: it is refused, and
    the refused start leaves nothing locked."""
    from protect import batch

    (tmp_path / "out").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "out")
    (tmp_path / "out-report").mkdir()
    with locked_by_another_process(tmp_path / "out-report"):
        res = run([str(photos), "--out", str(tmp_path / "link"), *FAST])
        assert res.exit_code == 2 and "another protect run is writing to" in res.output
        assert str((tmp_path / "out-report").resolve()) not in batch._HELD
    assert run([str(photos), "--out", str(tmp_path / "link"), *FAST]).exit_code == 0
    assert (tmp_path / "out-report" / "protect-report.json").exists() and not (
        tmp_path / "link-report"
    ).exists()


HOLD_LOCK = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('locked', flush=True)\n"
    "time.sleep(60)\n"
)


def _small(folder: Path, names: list[str], size=(12, 10)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
    return folder


@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_link_in_the_destination_back_into_the_source_is_refused(tmp_path, link):
    """`cp -rs SRC DST` leaves one link per original in DST: writing through it would overwrite the original."""
    src = _small(tmp_path / "src", ["a.png", "b.png", "sub/c.png"])
    out = tmp_path / "out"
    (out / "sub").parent.mkdir(parents=True)
    if link == "file":
        (out / "a.png").symlink_to(src / "a.png")
    else:
        (out / "sub").symlink_to(src / "sub", target_is_directory=True)
    before = digest(src)
    res = CliRunner().invoke(cli, ["images", str(src), "--out", str(out), *FAST])
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert res.exit_code == 2 and len(errors) == 1 and "through a symbolic link" in errors[0], res.output
    assert "Traceback" not in res.output
    assert digest(src) == before
    assert not (tmp_path / "out-report").exists()  # a refused run leaves no report folder behind


def test_a_name_near_the_file_system_limit_is_protected(tmp_path):
    """The temporary file's name adds about 20 bytes: a 244-byte name must still get its copy."""
    name = "L" * 240 + ".png"
    src = _small(tmp_path / "src", [name, "b.png"])
    res = CliRunner().invoke(cli, ["images", str(src), "--out", str(tmp_path / "out"), *FAST])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / name).is_file() and (tmp_path / "out" / "b.png").is_file()


def test_a_file_name_that_is_not_utf8_gets_its_copy_and_report(tmp_path):
    src = _small(tmp_path / "src", ["b.png", "c.png"])
    try:
        odd = Path(os.fsdecode(bytes(src) + b"/caf\xe9.png"))
        (src / "b.png").rename(odd)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["images", str(src), "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    assert (out / odd.name).is_file()
    page = (tmp_path / "out-report" / "report.html").read_text(encoding="utf-8")
    assert "caf\ufffd.png" in page


def test_an_icc_profile_that_no_longer_fits_the_pixels_is_dropped_and_noted(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk = srgb[:16] + b"CMYK" + srgb[20:]  # a print workflow's profile, by its colour-space field
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (12, 10, 4), dtype=np.uint8), "CMYK").save(
        src / "print.jpg", icc_profile=cmyk
    )
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(src / "web.png", icc_profile=srgb)
    out = tmp_path / "out"
    assert CliRunner().invoke(cli, ["images", str(src), "--out", str(out), *FAST]).exit_code == 0
    with Image.open(out / "print.png") as im:
        assert im.mode == "RGB" and "icc_profile" not in im.info
    with Image.open(out / "web.png") as im:
        assert im.info["icc_profile"] == srgb
    rows = json.loads((tmp_path / "out-report" / "protect-report.json").read_text())["images"]
    note = next(r for r in rows if r["source"].endswith("print.jpg"))["note"]
    assert "CMYK converted to RGB" in note and "ICC profile (CMYK data) was dropped" in note


def test_gif_is_an_image_and_extra_frames_are_noted(tmp_path):
    src = tmp_path / "src"
    _small(src, ["b.png"])
    frames = [Image.fromarray(np.full((12, 10, 3), v, np.uint8)) for v in (30, 200)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    out = tmp_path / "out"
    assert CliRunner().invoke(cli, ["images", str(src), "--out", str(out), *FAST]).exit_code == 0
    assert (out / "anim.png").is_file()
    rows = json.loads((tmp_path / "out-report" / "protect-report.json").read_text())["images"]
    assert "only the first of 2 frames" in next(r for r in rows if r["source"].endswith("anim.gif"))["note"]


def test_an_output_that_cannot_be_made_is_refused_before_any_work(tmp_path):
    src = _small(tmp_path / "src", ["a.png"])
    (tmp_path / "file").write_text("a file, not a folder")
    res = CliRunner().invoke(cli, ["images", str(src), "--out", str(tmp_path / "file" / "out"), *FAST])
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert res.exit_code == 2 and len(errors) == 1 and "cannot write to" in errors[0], res.output


def test_files_an_earlier_run_left_in_the_output_are_reported(tmp_path, caplog):
    src = _small(tmp_path / "src", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    assert CliRunner().invoke(cli, ["images", str(src), "--out", str(out), *FAST]).exit_code == 0
    (src / "c.png").unlink()  # the second release has one photo less
    res = CliRunner().invoke(cli, ["images", str(src), "--out", str(out), *FAST])
    assert res.exit_code == 0
    report = json.loads((tmp_path / "out-report" / "protect-report.json").read_text())
    assert report["not_from_this_run"] == ["c.png"] and report["summary"]["not_from_this_run"] == 1
    assert "1 file(s) this run did not write (e.g. c.png)" in caplog.text
    res = CliRunner().invoke(cli, ["images", str(src), "--out", str(tmp_path / "fresh"), *FAST])
    assert (
        json.loads((tmp_path / "fresh-report" / "protect-report.json").read_text())["not_from_this_run"] == []
    )


def test_a_resume_from_another_folder_knows_its_own_outputs(tmp_path, monkeypatch):
    _small(tmp_path / "src", ["a.png", "b.png"])
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert CliRunner().invoke(cli, ["images", "../src", "--out", "../out", *FAST]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["images", "src", "--out", "out", "--resume", *FAST])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out-report" / "protect-report.json").read_text())
    assert report["not_from_this_run"] == [] and len(report["images"]) == 2
    assert all(Path(r["output"]).is_file() for r in report["images"])  # this run's spelling of the paths
    (tmp_path / "out" / ".git").mkdir()  # a release folder that is also a repository clone
    (tmp_path / "out" / ".git" / "HEAD").write_text("ref: refs/heads/main")
    res = CliRunner().invoke(cli, ["images", "src", "--out", "out", *FAST])
    assert (
        json.loads((tmp_path / "out-report" / "protect-report.json").read_text())["not_from_this_run"] == []
    )


def test_keras_labels_of_shape_n_by_1_are_read_and_saved_as_they_came(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (8, 12, 12, 3), dtype=np.uint8)
    y = np.array([[0], [1]] * 4)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    res = CliRunner().invoke(
        cli, ["images", str(tmp_path / "d.npz"), "--out", str(tmp_path / "p.npz"), *FAST]
    )
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "p.npz") as d:
        np.testing.assert_array_equal(d["y"], y)
    report = json.loads((tmp_path / "p-report" / "protect-report.json").read_text())
    assert report["settings"]["run"]["reference_anchors"] == 0  # two classes of its own: no anchors needed


def test_greyscale_to_webp_drops_a_grey_profile_that_would_describe_rgb(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    gray = srgb[:16] + b"GRAY" + srgb[20:]
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(5)
    for name in ("g1.png", "g2.png"):
        Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8), "L").save(
            src / name, icc_profile=gray
        )
    out = tmp_path / "out"
    assert (
        CliRunner().invoke(cli, ["images", str(src), "--out", str(out), "--format", "webp", *FAST]).exit_code
        == 0
    )
    with Image.open(out / "g1.webp") as im:
        assert im.mode == "RGB" and not im.info.get("icc_profile")
    assert CliRunner().invoke(cli, ["images", str(src), "--out", str(tmp_path / "png"), *FAST]).exit_code == 0
    with Image.open(tmp_path / "png" / "g1.png") as im:
        assert im.mode == "L" and im.info["icc_profile"] == gray


def test_a_source_whose_output_name_would_be_too_long_is_skipped_not_fatal(tmp_path):
    src = _small(tmp_path / "src", ["L" * 251 + ".jpg", "b.png", "c.png"])  # 255 bytes; as .webp 256
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["images", str(src), "--out", str(out), "--format", "webp", *FAST])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out-report" / "protect-report.json").read_text())
    assert len(report["images"]) == 2 and "would exceed 255 bytes" in report["skipped"][0]["reason"]


def test_a_run_that_fails_after_skipping_files_still_names_them(tmp_path, caplog):
    """No summary is printed when the job raises, so the skips so far are logged as warnings: they may be why
    it failed ("needs at least 4 images, got 3" for a folder of 5)."""
    src = _small(tmp_path / "src", ["a.png", "b.png", "c.png"])
    for name in ("bad0.png", "bad1.png"):
        (src / name).write_bytes(b"garbage")
    res = run([str(src), "--out", str(tmp_path / "o"), "--labels", "clusters", *FAST])
    assert res.exit_code == 2 and "got 3" in res.output, res.output
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("bad0.png" in m for m in warned) and any("bad1.png" in m for m in warned), warned


def _interrupt_after(monkeypatch, copies: int) -> None:
    """Make the next run stop (Ctrl-C) once it has saved `copies` protected copies."""
    from protect.batch import CopyJob

    write = CopyJob.write

    def interrupted(self, picture, protected, **extra):
        if len(self.rows) == copies:
            raise KeyboardInterrupt
        return write(self, picture, protected, **extra)

    monkeypatch.setattr(CopyJob, "write", interrupted)


def test_a_resumed_run_protects_its_last_images_against_the_copies_already_saved(tmp_path, monkeypatch):
    """Killed after 22 of 24 copies, a resume used to optimise the last 2 alone: one image per class has no Bayes
    error to raise, so they were saved unchanged while the run said "protected 24". The saved copies now take
    part as fixed context. (With 8 images per class and 4 steps, a one-thread run can still find no gradient:
    the toy set is then too small, as in an uninterrupted run.)"""
    names = [f"{c}/{i}.png" for c in ("cats", "dogs") for i in range(12)]
    src = _small(tmp_path / "src", names, size=(16, 16))
    out = tmp_path / "out"
    args = [str(src), "--out", str(out), "--steps", "4", "--resolution", "16", "--device", "cpu"]
    _interrupt_after(monkeypatch, 22)
    assert run(args).exit_code != 0  # Click turns the interrupt into "Aborted!"
    assert len(list(out.rglob("*.png"))) == 22
    monkeypatch.undo()
    res = run([*args, "--resume"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out-report" / "protect-report.json").read_text())
    assert len(report["images"]) == 24
    changed = [r for r in report["images"] if not r.get("unchanged")]
    assert len(changed) == 24 and min(r["linf"] for r in report["images"]) > 0
    # the report describes both parts: the interrupted run's optimisation and the resumed one's
    assert [r["context_images"] for r in report["settings"]["runs"]] == [0, 22]


def test_a_killed_runs_temporary_for_another_format_is_listed_not_published_silently(tmp_path):
    src = _small(tmp_path / "src", ["a.png", "b.png"])
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.png.4bb7933e.tmp.png").write_bytes(b"half a png")  # a killed png run's, in a jpeg run's DST
    (out / ".notes.txt").write_text("the user's own hidden file")
    (out / ".git").mkdir()
    (out / ".git" / ".index.0123abcd.tmp").write_text("named like one, in a folder atomic_path never writes")
    res = run([str(src), "--out", str(out), "--format", "jpeg", *FAST])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out-report" / "protect-report.json").read_text())
    assert report["not_from_this_run"] == [".a.png.4bb7933e.tmp.png"]


def test_context_images_need_labels_like_the_images_they_join(tmp_path):
    from protect.errors import ConfigError
    from unlearnable.api import ProtectConfig, protect_arrays

    rng = np.random.default_rng(0)
    x = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(4)]
    config = ProtectConfig(steps=1, resolution=8, device="cpu")
    with pytest.raises(ConfigError, match="context_labels"):
        protect_arrays(x, ["a", "a", "b", "b"], config=config, context=x[:2])
    with pytest.raises(ConfigError, match="2 context images"):
        protect_arrays(x, ["a", "a", "b", "b"], config=config, context=x[:2], context_labels=["a"])
    protected, info = protect_arrays(
        x, np.array(["a", "a", "b", "b"]), config=config, context=x[:2], context_labels=np.array(["a", "b"])
    )
    assert info["classes"] == ["a", "b"] and info["context_images"] == 2 and len(protected) == 4


def test_a_killed_rerun_leaves_no_report_of_the_files_it_started_to_replace(tmp_path, monkeypatch):
    from protect.batch import CopyJob

    src = _small(tmp_path / "src", ["a.png", "b.png", "c.png", "d.png"])
    out, reports = tmp_path / "out", tmp_path / "out-report"
    assert run([str(src), "--out", str(out), *FAST]).exit_code == 0
    assert (reports / "protect-report.json").is_file() and (reports / "report.html").is_file()
    refused = run([str(src), "--out", str(out), "--epsilon", "0.001", *FAST])
    assert refused.exit_code == 2 and (reports / "protect-report.json").is_file()  # nothing replaced: kept
    _interrupt_after(monkeypatch, 2)
    monkeypatch.setattr(CopyJob, "finish", lambda self: 1)  # SIGKILL: no report is written at the end
    assert run([str(src), "--out", str(out), "--seed", "5", *FAST]).exit_code != 0
    assert not (reports / "protect-report.json").exists() and not (reports / "report.html").exists()
    monkeypatch.undo()
    assert run([str(src), "--out", str(out), "--seed", "5", "--resume", *FAST]).exit_code == 0
    report = json.loads((reports / "protect-report.json").read_text())
    assert len(report["images"]) == 4 and report["settings"]["seed"] == 5
