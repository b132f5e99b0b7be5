"""Caption files and image-caption pair sets for T2UE.

A captions file is a UTF-8 CSV with a `caption` column and, when it describes files in a folder, a `file` column
(paths relative to that folder; `./a.png` and `sub\\a.png` are read as `a.png` and `sub/a.png`). A caption with a
comma must be quoted (`a.png,"a dog, asleep"`): a row with extra fields is refused rather than cut short. Training
pairs are either a folder of images holding `captions.csv`, or an `.npz` with `x` (N,H,W,3 uint8) and `captions`
(N strings). Every problem is reported as one line naming the row.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from protect.errors import ConfigError
from protect.imageio import load_image, load_npz

CAPTIONS_NAME = "captions.csv"


@dataclass
class CaptionTable:
    """Captions in file order, with the file each describes when the CSV has a `file` column."""

    captions: list[str]
    files: list[str] | None = None


def read_captions(path: str | Path, *, require_file: bool = False) -> CaptionTable:
    """Read a captions CSV (`file`, `caption`); a missing column, empty caption or non-UTF-8 byte is one clear error."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"captions file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read captions file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8 CSV") from None
    # strict: a quote opened and never closed is an error, not a caption that swallows the rest of the file
    # newline="": rows may end in \n, \r\n or a lone \r (old Mac Excel exports), as open(newline="") reads them
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    except csv.Error as e:
        raise ConfigError(f"{path} is not a readable CSV: {e}") from None
    needed = ["file", "caption"] if require_file else ["caption"]
    missing = [c for c in needed if c not in fields]
    if missing:
        raise ConfigError(
            f"{path} needs the column(s) {', '.join(missing)} (found: {', '.join(fields) or 'none'})"
        )
    reader.fieldnames = fields
    captions, files = [], []
    try:
        for row in reader:
            captions.append(_row_caption(path, reader.line_num, row, len(fields)))
            if "file" in fields:
                name = (row.get("file") or "").strip()
                if not name:
                    raise ConfigError(f"{path} line {reader.line_num}: empty file name")
                files.append(_row_file(path, reader.line_num, name))
    except csv.Error as e:
        raise ConfigError(f"{path} line {reader.line_num}: {e}") from None
    if not captions:
        raise ConfigError(f"{path} has no caption rows")
    if files and len(set(files)) != len(files):
        dup = next(f for f in files if files.count(f) > 1)
        raise ConfigError(f"{path}: file {dup!r} is listed more than once")
    return CaptionTable(captions=captions, files=files or None)


def _row_caption(path: Path, line: int, row: dict, n_fields: int) -> str:
    """One row's caption, whitespace collapsed; extra fields mean an unquoted comma cut the caption short."""
    if None in row:
        raise ConfigError(
            f"{path} line {line}: {n_fields + len(row[None])} fields, expected {n_fields}; a caption "
            'containing commas must be quoted ("a dog, asleep")'
        )
    caption = (row.get("caption") or "").strip()
    if not caption:
        raise ConfigError(f"{path} line {line}: empty caption; every image needs a description")
    return " ".join(caption.split())


def _row_file(path: Path, line: int, name: str) -> str:
    try:
        return clean_file_name(name)
    except ConfigError as e:
        raise ConfigError(f"{path} line {line}: {e}") from None


def clean_file_name(name: str) -> str:
    """A relative image path in POSIX form (`./a.png` -> `a.png`, `sub\\a.png` -> `sub/a.png`), as matched at apply time.

    Absolute paths and `..` are refused: the file column names images inside the folder being protected.
    """
    posix = name.strip().replace("\\", "/")
    parts = [p for p in PurePosixPath(posix).parts if p != "."]
    if posix.startswith("/") or re.match(r"[A-Za-z]:(/|$)", posix):
        raise ConfigError(f"file {name!r} is an absolute path; give it relative to the image folder")
    if ".." in parts:
        raise ConfigError(f"file {name!r} points outside the image folder ('..')")
    if not parts:
        raise ConfigError(f"file {name!r} is not a file name")
    return "/".join(parts)


def load_pairs(source: str | Path, *, size: int) -> tuple[np.ndarray, list[str]]:
    """Training pairs as (uint8 (N, size, size, 3), captions) from a folder with `captions.csv` or an `.npz`.

    Folder images are centre-cropped to a square and resized to `size` (the generator's native resolution); an
    `.npz` must already be at that size.
    """
    source = Path(source)
    if source.is_file() and source.suffix == ".npz":
        data = load_npz(source)
        captions = data.texts("captions")
        if captions is None:
            raise ConfigError(f"{source} has no 'captions' array (N strings beside 'x')")
        if len(captions) != len(data.x):
            raise ConfigError(f"{source}: {len(captions)} captions for {len(data.x)} images")
        if data.x.shape[1:3] != (size, size):
            raise ConfigError(
                f"{source}: images are {data.x.shape[1]}x{data.x.shape[2]}, the generator needs {size}x{size}"
            )
        x = data.x if data.x.shape[-1] == 3 else np.repeat(data.x, 3, axis=-1)
        for i, c in enumerate(captions):
            if not c.strip():
                raise ConfigError(f"{source}: caption {i} is empty")
        return x, captions
    if not source.is_dir():
        raise ConfigError(
            f"{source} is neither a folder with {CAPTIONS_NAME} nor an .npz with x and captions"
        )
    table = read_captions(source / CAPTIONS_NAME, require_file=True)
    images = []
    for name in table.files or []:
        path = source / name
        if not path.is_file():
            raise ConfigError(f"{source / CAPTIONS_NAME} lists {name!r}, which is not in {source}")
        images.append(square(load_image(path).pixels, size))
    return np.stack(images), table.captions


def square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to size x size RGB (bicubic)."""
    h, w = pixels.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = pixels[top : top + s, left : left + s]
    im = Image.fromarray(crop[:, :, 0] if crop.shape[2] == 1 else crop).convert("RGB")
    return np.asarray(im.resize((size, size), Image.BICUBIC), dtype=np.uint8)
