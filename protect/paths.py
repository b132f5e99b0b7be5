"""Where protect keeps user state, and atomic file writes shared by every part."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import click

from protect.errors import ConfigError


def home() -> Path:
    """The user state directory: `$PROTECT_HOME`, else the platform's app dir for "protect"."""
    env = os.environ.get("PROTECT_HOME")
    path = Path(env) if env else Path(click.get_app_dir("protect"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"cannot use {path} for protect's state ({e.strerror or e}); set PROTECT_HOME to a writable folder"
        ) from e
    return path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it over `dest` only if the block succeeds.

    A killed process or a full disk therefore leaves either the old file or the new one, never half of one.
    The file gets the mode a plain `open` gives (0666 less the umask), or 0600 with `private`: `mkstemp`'s 0600
    for everything would leave protected photos, which are made to be published, unreadable to a web server.
    """
    dest = Path(os.path.realpath(dest))  # through a symlink: the link stays, its target is replaced
    if dest.exists() and not dest.is_file():
        raise ConfigError(f"{dest} exists and is not a regular file; choose another path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp_path = dest.parent / f".{_temp_stem(dest.name)}.{secrets.token_hex(4)}.tmp{dest.suffix}"
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666))
            break
        except FileExistsError:
            continue
    try:
        with naming_errors(dest):
            yield tmp_path
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def naming_errors(dest: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise an `OSError` that names no file as one that names `dest`.

    A write error (full disk, file-size limit) carries only its errno, so the CLI's one line would not say
    which file could not be written.
    """
    try:
        yield
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(dest)) from e


_TEMP_NAME = re.compile(r"\.(?P<dest>.+)\.[0-9a-f]{8}\.tmp(\.[^.]+)?")
NAME_MAX = 255  # bytes in one file name on ext4, XFS, APFS, NTFS...


def _temp_stem(name: str) -> str:
    """`name` as its temporary file carries it: cut (at a character) so that the temporary's name, which adds
    about 20 bytes, still fits `NAME_MAX` when `name` itself does. A cut name ends in a hash of the whole
    one, so two long names that share their first 230 bytes never share temporaries (or each other's sweep)."""
    room = NAME_MAX - len(os.fsencode(f"..{'0' * 8}.tmp{Path(name).suffix}"))
    if len(os.fsencode(name)) <= room:
        return name
    tag = "~" + hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
    cut = name
    while cut and len(os.fsencode(cut + tag)) > room:
        cut = cut[:-1]
    return cut + tag


def is_temp_leftover(path: Path) -> bool:
    """Whether `path` is named like a temporary file of `atomic_path` (hidden, but not to be published)."""
    return _TEMP_NAME.fullmatch(path.name) is not None


def remove_temp_leftovers(dests: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Delete the temporary files `atomic_path` left for these destinations because its process was killed.

    They are half-written or unrenamed copies, and a folder meant for publishing should not carry them. Only the
    temporaries of the given destinations are touched (beside their real paths, as `atomic_path` makes them), and a
    live writer's looks the same: call this only while holding the lock that keeps other writers of them out.
    """
    by_folder: dict[Path, set[str]] = {}
    for dest in dests:
        real = Path(os.path.realpath(dest))
        by_folder.setdefault(real.parent, set()).add(_temp_stem(real.name))
    removed = []
    for folder, names in by_folder.items():
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp*"):
            match = _TEMP_NAME.fullmatch(path.name)
            if match and match["dest"] in names and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `dest` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 `text` to `dest` atomically."""
    atomic_write_bytes(dest, text.encode("utf-8"))


def writable(folder: str | os.PathLike[str]) -> None:
    """Check that files can be made in `folder`, or in the nearest existing folder above it, where it will be
    made (permissions, a read-only mount), without creating anything: a refused run leaves no output behind."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as e:
        raise ConfigError(f"cannot write to {folder}: {e.strerror or e}") from e


def swap_folder(tmp: Path, dest: Path) -> Path | None:
    """Put the complete folder `tmp` at `dest` by renames, so a crash leaves the old folder or the new one, never
    a mix of their files. The old one is renamed to `.NAME.old-*` first and that path is returned (None when there
    was none) for the caller to delete once it has synced the parent; between the renames it is all there is."""
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{secrets.token_hex(4)}"
        os.rename(dest, old)
    os.rename(tmp, dest)
    return old
