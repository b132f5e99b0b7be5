"""Shared plumbing: atomic writes, destination checks, .npz validation, the CLI root."""

import errno
import io
import os
import subprocess
import sys
import zipfile
from pathlib import PurePosixPath

import numpy as np
import pytest
from click.testing import CliRunner

from protect.cli import cli
from protect.errors import ConfigError
from protect.imageio import check_destination, load_npz, plan_outputs
from protect.paths import atomic_path, atomic_write_text, remove_temp_leftovers


def test_a_write_error_without_a_file_name_names_the_destination(tmp_path):
    """A full disk or a file-size limit fails in write(), whose OSError names no file: the one error line the
    CLI prints ("File too large") should say which file could not be written."""
    target = tmp_path / "out.png"
    with pytest.raises(OSError, match="File too large") as caught, atomic_path(target):
        raise OSError(errno.EFBIG, "File too large")
    assert caught.value.filename == str(target) and caught.value.errno == errno.EFBIG
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind


def test_temp_leftovers_of_a_killed_write_are_removed_and_nothing_else(tmp_path):
    """What a kill inside `atomic_path` leaves is removed; other destinations' temps and look-alikes stay."""
    kill = (
        "import os, sys; from protect.paths import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'half'); os._exit(9)"
    )
    for name in ("x.npz", "y.npz"):
        subprocess.run([sys.executable, "-c", kill, str(tmp_path / name)], check=False)
    (tmp_path / ".notes.tmp").write_text("a user's file")
    x_temp, y_temp = (next(tmp_path.glob(f".{n}.*.tmp.npz")) for n in ("x.npz", "y.npz"))
    assert remove_temp_leftovers([tmp_path / "x.npz"]) == [x_temp]
    (tmp_path / "link.npz").symlink_to(tmp_path / "y.npz")  # a temp lies beside the link's target
    assert y_temp.exists() and remove_temp_leftovers([tmp_path / "link.npz"]) == [y_temp]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp", "link.npz"]


def test_a_long_name_gets_a_temporary_that_fits_and_is_still_swept(tmp_path):
    dest = tmp_path / ("é" * 120 + ".png")  # 244 bytes in UTF-8: legal, but its temporary's name would not be
    kill = "import os, sys; from protect.paths import atomic_path\nwith atomic_path(sys.argv[1]):\n    os._exit(9)"
    subprocess.run([sys.executable, "-c", kill, str(dest)], check=False)
    (temp,) = tmp_path.iterdir()
    assert len(os.fsencode(temp.name)) <= 255 and temp.name.endswith(".tmp.png")
    assert remove_temp_leftovers([dest]) == [temp] and not any(tmp_path.iterdir())
    atomic_write_text(dest, "written")
    assert dest.read_text() == "written"
    other = tmp_path / (
        "é" * 120 + "2.png"
    )  # the same first 240 bytes: its temporary must not be the sweep's
    with atomic_path(other) as live:
        assert remove_temp_leftovers([dest]) == [] and live.exists()
        live.write_text("other")
    assert other.read_text() == "other"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_atomic_writes_get_the_umask_mode_or_owner_only(tmp_path):
    """Outputs made to be published must be readable as a plain `open` would leave them (not mkstemp's 0600)."""
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "public.png", "x")
        with atomic_path(tmp_path / "secret.jsonl", private=True) as tmp:
            tmp.write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "public.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "secret.jsonl").stat().st_mode & 0o777 == 0o600


def test_destination_rules(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(ConfigError, match="inside the source"):
        check_destination(src, src)
    with pytest.raises(ConfigError, match="inside the source"):
        check_destination(src, src / "a" / "b")
    with pytest.raises(ConfigError, match="does not exist"):
        check_destination(tmp_path / "missing", tmp_path / "out")
    check_destination(src, tmp_path / "out")


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"y": np.zeros(3)}, "no array named 'x'"),
        ({"x": np.zeros((3, 4, 4, 3), np.float32)}, "must be uint8"),
        ({"x": np.zeros((3, 4, 4), np.uint8)}, "must be uint8"),
        (
            {"x": np.zeros((3, 4, 4, 3), np.uint8), "y": np.zeros(2)},
            r"one label per image, shape \(3,\) or \(3, 1\); got shape \(2,\)",
        ),
        (
            {"x": np.zeros((3, 4, 4, 3), np.uint8), "y": np.int64(3)},
            r"one label per image, shape \(3,\) or \(3, 1\); got shape \(\)",
        ),
        ({"x": np.zeros((3, 4, 4, 3), np.uint8), "y": np.eye(3)}, r"got shape \(3, 3\)"),
    ],
)
def test_npz_validation_gives_one_clear_error(tmp_path, arrays, message):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match=message):
        load_npz(path)


def test_truncated_npz_is_a_clear_error(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 4, 4, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ConfigError, match="cannot read"):
        load_npz(path)


def test_root_help_lists_every_capability_without_importing_torch():
    code = (
        "import sys; from click.testing import CliRunner; from protect.cli import cli; "
        "r = CliRunner().invoke(cli, ['--help']); print(r.output); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("images", "t2ue", "watermark", "model", "memory"):
        assert f"  {name} " in out
    assert out.strip().endswith("False")


def test_every_subcommand_has_help():
    for name in ("images", "t2ue", "watermark", "model", "memory"):
        res = CliRunner().invoke(cli, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)
        assert "Example" in res.output or "Commands" in res.output


def test_destination_may_not_contain_the_source(tmp_path):
    src = tmp_path / "par" / "p"
    src.mkdir(parents=True)
    with pytest.raises(ConfigError, match="contains the source"):
        check_destination(src, tmp_path / "par")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        check_destination(src, tmp_path / "afile")


def test_output_plan_disambiguates_same_stem_sources(tmp_path):
    rels = [PurePosixPath(n) for n in ("a.jpg", "a.png", "A.JPG", "a.jpg.png", "b.png", "c/x.png")]
    plan = {
        str(rel): path.relative_to(tmp_path).as_posix() for rel, path in plan_outputs(tmp_path, rels).items()
    }
    assert plan == {
        # a.jpg.png is a source's own output, and names are compared case-insensitively: counters follow
        "A.JPG": "A.JPG-2.png",
        "a.jpg": "a.jpg-3.png",
        "a.jpg.png": "a.jpg.png",
        "a.png": "a.png.png",
        "b.png": "b.png",
        "c/x.png": "c/x.png",
    }
    assert len({p.casefold() for p in plan.values()}) == len(plan)


def test_output_plan_never_names_a_file_like_an_output_folder(tmp_path):
    rels = [PurePosixPath(n) for n in ("q.jpg", "q.png/x.png")]
    plan = {str(r): p.relative_to(tmp_path).as_posix() for r, p in plan_outputs(tmp_path, rels).items()}
    assert plan == {"q.jpg": "q.jpg.png", "q.png/x.png": "q.png/x.png"}


def test_atomic_writes_keep_symlinks_and_refuse_special_files(tmp_path):
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    atomic_write_text(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "new"
    (tmp_path / "dir").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        atomic_write_text(tmp_path / "dir", "x")


def test_interrupt_and_os_errors_are_one_line(tmp_path):
    """Ctrl-C exits 130 like an interrupted shell command; an OSError (a full disk) is one line, not a traceback."""
    code = (
        "import sys, click\n"
        "from protect.cli import cli\n"
        "@cli.command()\n"
        "@click.argument('what')\n"
        "def boom(what):\n"
        "    raise KeyboardInterrupt if what == 'int' else OSError(28, 'No space left on device', '/x/out.png')\n"
        "cli(sys.argv[1:])\n"
    )
    for arg, status, line in (
        ("int", 130, "Aborted."),
        ("disk", 1, "Error: No space left on device: /x/out.png"),
    ):
        res = subprocess.run([sys.executable, "-c", code, "boom", arg], capture_output=True, text=True)
        assert res.returncode == status and res.stderr.strip() == line, res.stderr


def test_a_cache_error_wrapped_by_the_library_is_still_a_cache_error(tmp_path):
    """open_clip re-raises a failed download as RuntimeError; the disk error behind it must still show."""
    import errno

    from protect.errors import OfflineError
    from protect.weights import fetch_error

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "w.bin"))
        except OSError:  # as open_clip's download_pretrained does: the OSError is only the __context__
            raise RuntimeError("Failed to download weights for tag 'x'")  # noqa: B904
    except RuntimeError as wrapped:
        error = fetch_error("open_clip:M:x", wrapped, tmp_path)
    assert isinstance(error, ConfigError) and "No space left" in str(error) and "PROTECT_HOME" in str(error)
    assert isinstance(fetch_error("open_clip:M:x", RuntimeError("timed out"), tmp_path), OfflineError)


def test_unusable_arguments_are_one_line_and_a_bare_group_still_shows_its_help(tmp_path):
    for args in (["images", str(tmp_path / "missing"), "--out", "x"], ["memory", "add"], ["nosuch"]):
        res = CliRunner().invoke(cli, args)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), res.output
        assert "--help')" in lines[0] and "Usage:" not in res.output
    res = CliRunner().invoke(cli, ["memory"])
    assert (
        "memory [OPTIONS] COMMAND" in res.output and "Commands:" in res.output and "Error" not in res.output
    )


def _npz_declaring(path, shape: bytes) -> None:
    """An archive (CRC and all) whose 'x' header declares `shape` over 96 bytes of data."""
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 4, 4, 3), np.uint8))
    old = b"(2, 4, 4, 3), }"
    padded = old + b" " * (len(shape) + 3 - len(old))
    assert padded in buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", buf.getvalue().replace(padded, shape + b", }", 1))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (b"(1000000000000, 4, 4, 3)", "more than this machine's"),  # 48 TB of small images: refused unread
        (b"(2, 15000, 15000, 3)", "images of 15000x15000 pixels are too large"),  # a bomb: refused unread
    ],
)
def test_an_npz_whose_header_claims_too_much_is_one_clear_error(tmp_path, shape, message):
    _npz_declaring(tmp_path / "big.npz", shape)
    with pytest.raises(ConfigError, match=message):
        load_npz(tmp_path / "big.npz")


def test_files_that_are_no_npz_are_named_for_what_they_are(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(ConfigError, match="it is not an .npz archive") as e:
        load_npz(tmp_path / "text.npz")
    assert "pickle" not in str(e.value)
    with pytest.raises(ConfigError, match="a single .npy array"):
        load_npz(tmp_path / "one.npz")
