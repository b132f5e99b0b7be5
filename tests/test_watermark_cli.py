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
    manifest = json.loads((tmp_path / "release-report" / "watermark-manifest.json").read_text())
    assert "s3cret" not in json.dumps(manifest)
    assert manifest["settings"]["layout"]["sub_bits"] == 10 and len(manifest["images"]) == 12
    assert all(row["psnr"] > 35 and row["ssim"] > 0.9 for row in manifest["images"])

    r = _run("watermark", "verify", out, "--key", "s3cret", "--message", "AB", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["verdict"] == "match" and result["message"] == "AB" and result["bit_accuracy"] == 1.0
    assert result["images_read"] == 12 and result["images_used"] == 12 and result["p_value"] < 1e-6

    r = _run(
        "watermark",
        "verify",
        out,
        "--key",
        "s3cret",
        "--manifest",
        tmp_path / "release-report" / "watermark-manifest.json",
    )
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
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert (
        r.output.startswith("Error: 0 markable images cannot carry all 5 chunks") and "8x8 image" in r.output
    )
    assert not (tmp_path / "o").exists() and not (tmp_path / "o-report").exists()


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
    manifest = json.loads((tmp_path / "release-report" / "watermark-manifest.json").read_text())
    assert len(manifest["images"]) == 12


def _one_error_line(r, *parts):
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    assert all(p in lines[0] for p in parts), lines[0]


def test_a_wrong_claim_sharing_most_bits_is_not_certified(photos, tmp_path):
    out = tmp_path / "release"
    embed = ("watermark", "embed", photos, "--out", out, "--key", "k")
    assert _run(*embed, "--message", "(c) ACME 2024").exit_code == 0
    r = _run("watermark", "verify", out, "--key", "k", "--message", "(c) EVIL 2024")
    assert r.exit_code == 1 and r.output.startswith("different-message:"), r.output
    assert "message: (c) EVIL 2024" not in r.output and "'(c) ACME 2024'" in r.output
    r = _run("watermark", "verify", out, "--key", "k", "--message", "(c) ACME 2024")
    assert r.exit_code == 0 and "message: (c) ACME 2024" in r.output


def test_one_image_with_missing_chunks_is_inconclusive(photos, tmp_path):
    out = tmp_path / "release"
    assert _run("watermark", "embed", photos, "--out", out, "--message", "AB", "--key", "k").exit_code == 0
    r = _run("watermark", "verify", out / "im05.png", "--key", "k", "--message", "AB", "--json")
    result = json.loads(r.output)
    assert r.exit_code == 1 and result["verdict"] == "inconclusive" and result["missing_chunks"]


def test_unusable_files_take_no_combination(photos, tmp_path):
    src = tmp_path / "few"
    src.mkdir()
    for p in sorted(photos.glob("*.png"))[:5]:
        (src / p.name).write_bytes(p.read_bytes())
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "im00b-tiny.png")
    (src / "im02b-corrupt.png").write_bytes(b"not a png")
    out = tmp_path / "release"
    r = _run("watermark", "embed", src, "--out", out, "--message", "AB", "--key", "k")
    assert r.exit_code == 0 and "marked 5 images, skipped 2" in r.output, r.output
    assert "im00b-tiny.png" in r.output and "im02b-corrupt.png" in r.output  # named in the summary
    manifest = json.loads((tmp_path / "release-report" / "watermark-manifest.json").read_text())
    assert manifest["settings"]["images"] == 5 and len(manifest["skipped"]) == 2
    assert manifest["settings"]["coverage"]["worst_case_images"] == 5
    r = _run("watermark", "verify", out, "--key", "k", "--message", "AB", "--json")
    assert json.loads(r.output)["verdict"] == "match", r.output


def test_a_release_too_small_for_every_chunk_is_refused(photos, tmp_path):
    src = tmp_path / "six"
    src.mkdir()
    for p in sorted(photos.glob("*.png"))[:6]:
        (src / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "release"
    r = _run("watermark", "embed", src, "--out", out, "--message", "AB", "--key", "k", "--tau", "1")
    _one_error_line(r, "6 markable images cannot carry all 11 chunks", "at least 11 are needed")
    assert not out.exists() and not (tmp_path / "release-report").exists()


@pytest.mark.parametrize("change", [("--message", "Zr"), ("--key", "0th3r-key")])
def test_resume_refuses_a_changed_message_or_key(photos, tmp_path, change):
    out = tmp_path / "release"
    args = {"--message": "Zq", "--key": "s3cret-key"}
    assert _run("watermark", "embed", photos, "--out", out, *sum(args.items(), ())).exit_code == 0
    (out / "im07.png").unlink()
    args[change[0]] = change[1]
    r = _run("watermark", "embed", photos, "--out", out, *sum(args.items(), ()), "--resume")
    _one_error_line(r, "--resume: settings differ", "message_fingerprint")
    assert not (out / "im07.png").exists()
    report = tmp_path / "release-report"
    text = "".join(f.read_text() for f in report.iterdir() if f.suffix in (".json", ".jsonl"))
    assert not any(secret in text for secret in ("Zq", "Zr", "s3cret", "0th3r"))


@pytest.mark.parametrize("strength", ["0", "nan", "inf", "-1", "1e9"])
def test_strength_outside_the_backend_range_is_one_line(photos, tmp_path, strength):
    out = tmp_path / "release"
    r = _run(
        "watermark", "embed", photos, "--out", out, "--message", "AB", "--key", "k", "--strength", strength
    )
    _one_error_line(r, "--strength", "outside the dwtdct range [6, 100]")
    assert not out.exists() and not (tmp_path / "release-report").exists()
    r = _run("watermark", "verify", photos, "--key", "k", "--message", "AB", "--strength", strength)
    _one_error_line(r, "outside the dwtdct range")


def test_a_message_too_long_for_the_backend_is_one_line_before_writing(photos, tmp_path):
    out = tmp_path / "release"
    r = _run(
        "watermark", "embed", photos, "--out", out, "--message", "x" * 40, "--key", "k", "--backend", "hidden"
    )
    _one_error_line(r, "71 payload bits per image are needed but the hidden backend carries at most 30")
    assert not out.exists() and not (tmp_path / "release-report").exists()


def test_an_unreadable_suspect_names_the_cause(tmp_path):
    bad = tmp_path / "leak.png"
    bad.write_bytes(b"garbage")
    r = _run("watermark", "verify", bad, "--key", "k", "--message", "AB")
    _one_error_line(r, "no readable images in", "1 unreadable, e.g. cannot read")


def test_embed_verifies_its_own_release_and_says_when_it_cannot(photos, tmp_path, caplog):
    out = tmp_path / "release"
    r = _run("watermark", "embed", photos, "--out", out, "--message", "AB", "--key", "k")
    assert r.exit_code == 0 and "self-check: verify on" in r.output and "says match" in r.output, r.output
    manifest = json.loads((tmp_path / "release-report" / "watermark-manifest.json").read_text())
    assert manifest["settings"]["self_check"]["verdict"] == "match"
    weak = ["--strength", "6", "--format", "jpeg", "--quality", "50"]  # the weakest mark, then lossy JPEG
    r = _run("watermark", "embed", photos, "--out", tmp_path / "weak", "--message", "AB", "--key", "k", *weak)
    assert r.exit_code == 0
    manifest = json.loads((tmp_path / "weak-report" / "watermark-manifest.json").read_text())
    assert manifest["settings"]["self_check"]["verdict"] != "match"
    assert "this release may not prove ownership" in caplog.text


def test_a_second_embed_into_the_same_output_reports_the_first_runs_files(photos, tmp_path, caplog):
    out = tmp_path / "release"
    assert _run("watermark", "embed", photos, "--out", out, "--message", "AB", "--key", "k").exit_code == 0
    r = _run("watermark", "embed", photos, "--out", out, "--message", "XY", "--key", "k", "--format", "jpeg")
    assert r.exit_code == 0
    manifest = json.loads((tmp_path / "release-report" / "watermark-manifest.json").read_text())
    assert len(manifest["not_from_this_run"]) == 12 and all(
        f.endswith(".png") for f in manifest["not_from_this_run"]
    )
    assert "12 file(s) this run did not write" in caplog.text


def test_the_self_check_can_be_skipped_and_a_failing_one_keeps_the_manifest(photos, tmp_path, monkeypatch):
    r = _run(
        "watermark",
        "embed",
        photos,
        "--out",
        tmp_path / "a",
        "--message",
        "AB",
        "--key",
        "k",
        "--no-self-check",
    )
    assert r.exit_code == 0 and "self-check" not in r.output
    assert (
        "self_check"
        not in json.loads((tmp_path / "a-report" / "watermark-manifest.json").read_text())["settings"]
    )
    import watermark.api as api

    def unreadable(_):
        raise api.ConfigError("no readable images in the release")

    monkeypatch.setattr(api, "read_suspect", unreadable)
    r = _run("watermark", "embed", photos, "--out", tmp_path / "b", "--message", "AB", "--key", "k")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "b-report" / "watermark-manifest.json").read_text())
    assert manifest["settings"]["self_check"]["verdict"] == "error" and len(manifest["images"]) == 12


def test_no_watermark_under_guessed_settings_says_which_and_a_contradicted_manifest_is_refused(
    photos, tmp_path
):
    out = tmp_path / "release"
    assert _run("watermark", "embed", photos, "--out", out, "--message", "AB", "--key", "k").exit_code == 0
    r = _run("watermark", "verify", out, "--key", "k", "--message", "ABC")  # a claim of the wrong length
    assert (
        r.exit_code == 1 and "read as 24-bit messages with --tau 0.8" in r.output and "--manifest" in r.output
    )
    manifest = tmp_path / "release-report" / "watermark-manifest.json"
    r = _run("watermark", "verify", out, "--key", "k", "--manifest", manifest, "--message-bits", "40")
    assert r.exit_code == 2 and "contradicts the manifest's 16" in r.output
    assert _run("watermark", "verify", out, "--key", "k", "--manifest", manifest).exit_code == 0


def test_an_unwritable_output_name_takes_no_combination_and_is_listed_once(photos, tmp_path):
    """A source whose output name would pass 255 bytes is left out before combinations are assigned (it would
    otherwise keep a chunk out of the release), and an unreadable one is listed once even if its name is long."""
    src = tmp_path / "long"
    src.mkdir()
    for p in sorted(photos.glob("*.png"))[:6]:
        (src / p.name).write_bytes(p.read_bytes())
    long = "L" * 248
    (src / f"{long}.png").write_bytes(next(photos.glob("*.png")).read_bytes())  # as .jpg.png: 256 bytes
    (src / f"{long}.jpg").write_bytes(b"not a jpeg")  # unreadable and too long
    out = tmp_path / "release"
    r = _run("watermark", "embed", src, "--out", out, "--message", "AB", "--key", "k")
    assert r.exit_code == 0 and "marked 6 images, skipped 2" in r.output, r.output
    assert r.output.count(f"skipped {src / long}") == 2  # each of the two files once
    manifest = json.loads((tmp_path / "release-report" / "watermark-manifest.json").read_text())
    assert manifest["settings"]["images"] == 6 and manifest["settings"]["self_check"]["verdict"] == "match"
