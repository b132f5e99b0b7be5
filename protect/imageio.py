"""Image input and output shared by every command that writes protected copies.

Conventions (one place, so `protect images`, `protect t2ue apply` and `protect watermark embed` agree):
- a source is a folder (searched recursively) or an `.npz` with `x` (N,H,W,C uint8) and optional `y`;
- EXIF orientation is applied to the pixels, alpha is split off and written back untouched, ICC profiles are kept;
- EXIF (GPS included) is dropped unless asked for;
- every write is atomic and the destination may not be the source or lie inside it.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from protect.errors import ConfigError, UnreadableImageError
from protect.paths import atomic_path

log = logging.getLogger(__name__)

try:  # HEIC/HEIF photos from phones, when the optional plugin is installed.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIC_SUFFIXES: tuple[str, ...] = (".heic", ".heif")
except ImportError:  # pragma: no cover - depends on the environment
    HEIC_SUFFIXES = ()

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff") + HEIC_SUFFIXES
OUTPUT_FORMATS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
LOSSY_FORMATS = ("jpeg", "webp")


@dataclass
class Picture:
    """One decoded image: colour pixels to protect plus everything that must travel unchanged.

    `pixels` is uint8 (H, W, 1) for greyscale or (H, W, 3) for colour, already in display orientation.
    """

    rel: PurePosixPath
    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc: bytes | None = None
    exif: bytes | None = None
    label: str | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def with_pixels(self, pixels: np.ndarray) -> Picture:
        """The same picture (alpha, ICC, EXIF, label) with new colour pixels of the same shape."""
        if pixels.shape != self.pixels.shape or pixels.dtype != np.uint8:
            raise ValueError(f"expected uint8 {self.pixels.shape}, got {pixels.dtype} {pixels.shape}")
        return replace(self, pixels=pixels)


def check_destination(src: str | Path, dst: str | Path) -> None:
    """Refuse a destination that is the source or lies inside it (so originals can never be overwritten)."""
    src_r, dst_r = Path(src).resolve(), Path(dst).resolve()
    if not Path(src).exists():
        raise ConfigError(f"source {src} does not exist")
    if src_r.is_file() and dst_r == src_r:
        raise ConfigError(f"--out {dst} is the source file; choose another path")
    if src_r.is_dir() and (dst_r == src_r or src_r in dst_r.parents):
        raise ConfigError(f"--out {dst} is inside the source folder {src}; choose a folder outside it")


def find_images(src: str | Path) -> list[Path]:
    """All image files under a folder, recursively, in a stable order (hidden files and our own outputs skipped)."""
    root = Path(src)
    if not root.is_dir():
        raise ConfigError(f"{src} is not a folder")
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def load_image(path: str | Path, *, root: str | Path | None = None, keep_exif: bool = False) -> Picture:
    """Decode one image file; raises `UnreadableImageError` with the reason if it cannot be read."""
    path = Path(path)
    rel = PurePosixPath(path.relative_to(root).as_posix()) if root else PurePosixPath(path.name)
    try:
        with Image.open(path) as im:
            im.load()
            icc = im.info.get("icc_profile")
            im = ImageOps.exif_transpose(im)  # display orientation; removes the Orientation tag
            exif = im.getexif().tobytes() if keep_exif and len(im.getexif()) else None
            mode = im.mode
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UnreadableImageError(f"cannot read {path}: {e}") from e
    alpha = None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        im = im.convert("LA" if mode == "LA" else "RGBA")
        alpha = np.asarray(im.getchannel("A")).copy()
        im = im.convert("L" if mode == "LA" else "RGB")
    elif mode not in ("RGB", "L"):
        log.warning("%s: mode %s converted to RGB", path, mode)
        im = im.convert("RGB")
    pixels = np.asarray(im, dtype=np.uint8).copy()
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    label = rel.parts[0] if len(rel.parts) > 1 else None
    return Picture(
        rel=rel,
        pixels=pixels,
        alpha=alpha,
        icc=icc,
        exif=exif,
        label=label,
        source=str(path),
        meta={"mode": mode},
    )


def to_pil(picture: Picture) -> Image.Image:
    """Reassemble colour pixels and the untouched alpha into a PIL image of the original kind."""
    grey = picture.pixels.shape[2] == 1
    im = Image.fromarray(picture.pixels[:, :, 0] if grey else picture.pixels, "L" if grey else "RGB")
    if picture.alpha is not None:
        im.putalpha(Image.fromarray(picture.alpha, "L"))
    return im


def output_path(dst: str | Path, rel: PurePosixPath, fmt: str = "png") -> Path:
    """Mirror `rel` under `dst` with the output format's suffix (same relative folders and stem)."""
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    return Path(dst).joinpath(*rel.parts).with_suffix(OUTPUT_FORMATS[fmt])


def encode(picture: Picture, fmt: str = "png", quality: int = 95) -> bytes:
    """Encode a picture in `fmt`, keeping ICC (and EXIF when the picture carries it)."""
    im = to_pil(picture)
    kwargs: dict = {}
    if picture.icc:
        kwargs["icc_profile"] = picture.icc
    if picture.exif:
        kwargs["exif"] = picture.exif
    if fmt == "jpeg":
        if im.mode in ("RGBA", "LA"):
            raise ConfigError(f"{picture.rel}: JPEG cannot hold the alpha channel; use --format png")
        kwargs.update(quality=quality, subsampling=0)
    elif fmt == "webp":
        kwargs.update(quality=quality)
    buf = io.BytesIO()
    im.save(buf, format=fmt.upper(), **kwargs)
    return buf.getvalue()


def decode_pixels(data: bytes, like: Picture) -> np.ndarray:
    """Decode `encode`'s output back to the colour pixels, to measure exactly what was saved."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("L" if like.pixels.shape[2] == 1 else "RGB")
        arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def save_image(picture: Picture, path: str | Path, fmt: str = "png", quality: int = 95) -> np.ndarray:
    """Write a picture atomically and return the colour pixels as they will be read back from disk."""
    data = encode(picture, fmt, quality)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return picture.pixels if fmt == "png" else decode_pixels(data, picture)


@dataclass
class ArrayDataset:
    """An `.npz` image set: uint8 images (N, H, W, C), optional labels and any extra arrays (class names...)."""

    x: np.ndarray
    y: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def load_npz(path: str | Path) -> ArrayDataset:
    """Read an `.npz` holding `x` (N,H,W,C uint8) and optional `y`; wrong shapes give one clear error."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ConfigError(f"cannot read {path} as .npz: {e}") from e
    if "x" not in arrays:
        raise ConfigError(f"{path} has no array named 'x' (found: {', '.join(arrays) or 'nothing'})")
    x = arrays.pop("x")
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ConfigError(f"{path}: 'x' must be uint8 (N, H, W, C) with C in (1, 3); got {x.dtype} {x.shape}")
    y = arrays.pop("y", None)
    if y is not None and len(y) != len(x):
        raise ConfigError(f"{path}: 'y' has {len(y)} labels for {len(x)} images")
    return ArrayDataset(x=x, y=y, extras=arrays)


def save_npz(path: str | Path, dataset: ArrayDataset) -> None:
    """Write an `.npz` atomically, with the same array names that `load_npz` reads."""
    arrays = {"x": dataset.x, **dataset.extras}
    if dataset.y is not None:
        arrays["y"] = dataset.y
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
