"""Image input and output shared by every command that writes protected copies.

Conventions (one place, so `protect images`, `protect t2ue apply` and `protect watermark embed` agree):
- a source is a folder (searched recursively) or an `.npz` with `x` (N,H,W,C uint8) and optional `y`;
- EXIF orientation is applied to the pixels, alpha is split off and written back untouched, ICC profiles are kept;
- EXIF (GPS included) is dropped unless asked for;
- 16-bit greyscale is reduced to 8 bits (value / 257, rounded); 32-bit integer and float images are refused, as their
  range has no defined 8-bit meaning;
- every write is atomic, the destination may not be the source, lie inside it or contain it, and source files whose
  outputs would share a path keep their extension in the output name (`a.jpg.png`, `a.png.png`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import unicodedata
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from protect.errors import ConfigError, UnreadableImageError
from protect.paths import NAME_MAX, atomic_path

log = logging.getLogger(__name__)

HEIC_SUFFIXES = (".heic", ".heif")
try:  # HEIC/HEIF photos from phones, when the optional plugin is installed.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIC_READABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    HEIC_READABLE = False

# HEIC is listed without its plugin too: such a photo is then skipped with the reason, not silently left out
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff") + HEIC_SUFFIXES
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
    """Refuse a destination that could overwrite an original or cannot be written as the kind of output needed.

    A folder destination may neither lie inside the source folder nor contain it: mirrored outputs of `SRC/p/x.png`
    written under a parent of SRC can land on SRC's own files (`par/p` -> `par` writes `par/p/x.png`).
    """
    src_r, dst_r = Path(src).resolve(), Path(dst).resolve()
    if not Path(src).exists():
        raise ConfigError(f"source {src} does not exist")
    if src_r.is_file() and dst_r == src_r:
        raise ConfigError(f"--out {dst} is the source file; choose another path")
    if src_r.is_dir() and (dst_r == src_r or src_r in dst_r.parents):
        raise ConfigError(f"--out {dst} is inside the source folder {src}; choose a folder outside it")
    if src_r.is_dir() and dst_r in src_r.parents:
        raise ConfigError(f"--out {dst} contains the source folder {src}; choose a folder outside it")
    if src_r.is_dir() and dst_r.exists() and not dst_r.is_dir():
        raise ConfigError(f"--out {dst} exists and is not a folder; choose a folder")
    if src_r.is_file() and dst_r.is_dir():
        raise ConfigError(f"--out {dst} is a folder; an .npz source needs an .npz file as --out")


def refuse_links_into(src: str | Path, outputs: Iterable[Path]) -> None:
    """Refuse outputs that a symbolic link inside the destination leads back into the source folder.

    `check_destination` compares the two folders; a link inside DST (`cp -rs SRC DST` makes one per file, or
    `DST/sub -> SRC/sub`) sends a write to an original all the same, since writes go through links.
    """
    root = Path(src).resolve()
    for out in outputs:
        real = Path(os.path.realpath(out))
        if real == root or root in real.parents:
            raise ConfigError(
                f"{out} leads into the source folder ({real}) through a symbolic link; remove the link or "
                "choose another --out"
            )


def find_images(src: str | Path, *, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """All image files under a folder, recursively, in a stable order; hidden files (and with them our own
    temporary files) are skipped.

    Symbolic links to folders are followed, so a linked sub-folder is protected like a real one, but every real
    folder is listed once: the real tree first, then links to folders not listed yet (a loop, or a link to a
    sibling, adds nothing), never a folder inside `exclude` (the destination: a link there would read this run's
    outputs as sources). A dangling link or one that cannot be followed (a loop, no permission) with an image
    name is listed, so that reading it fails and it is reported as skipped instead of vanishing; a folder that
    cannot be listed is a warning.
    """
    root = Path(src)
    if not root.is_dir():
        raise ConfigError(f"{src} is not a folder")
    banned = [Path(os.path.realpath(p)) for p in exclude]
    files: list[Path] = []
    seen: set[str] = set()
    todo, links = [root], []  # a stack, not recursion: a deep tree must not hit Python's recursion limit
    while todo or links:
        if not todo:  # the real tree is done: follow the links found in it, then those found through them
            todo, links = sorted(links, reverse=True), []
        folder = todo.pop()
        real = os.path.realpath(folder)
        if real in seen:
            log.info("not following %s: %s is listed already", folder, real)
            continue
        if any(b == Path(real) or b in Path(real).parents for b in banned):
            log.warning("not following %s: it leads into the destination (%s)", folder, real)
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError as e:
            log.warning("cannot list %s (%s): its images are left out", folder, e.strerror or e)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path, image = Path(entry.path), Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
            try:
                if entry.is_dir():  # follows links
                    (links if entry.is_symlink() else todo).append(path)
                elif image and (entry.is_file() or not os.path.exists(path)):  # not a fifo, a device...
                    files.append(path)
            except OSError as e:  # a link that cannot be followed
                if image:
                    files.append(path)
                else:
                    log.warning("cannot follow %s (%s)", path, e.strerror or e)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def require_images(src: str | Path, *, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """`find_images`, refusing a folder that holds none: one clear line instead of an empty run."""
    files = find_images(src, exclude=exclude)
    if not files:
        raise ConfigError(f"no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) found in {src}")
    return files


def is_hidden(rel: Path | PurePosixPath) -> bool:
    """Whether a path below a folder is hidden there (a dot file, or inside a dot folder such as `.git/`)."""
    return any(part.startswith(".") for part in rel.parts)


def relative(path: Path, root: str | Path) -> PurePosixPath:
    """`path` relative to `root`, in POSIX form: how sources are keyed in outputs, reports and `--resume`."""
    return PurePosixPath(Path(path).relative_to(root).as_posix())


def load_image(path: str | Path, *, root: str | Path | None = None, keep_exif: bool = False) -> Picture:
    """Decode one image file; raises `UnreadableImageError` with the reason if it cannot be read.

    The returned pixels are what gets protected and what the report measures against. Lossless modes (RGB, L, 1,
    alpha split off) are kept exactly; 16-bit greyscale becomes 8-bit greyscale by value / 257, rounded (so the
    saved file is within eps + half a level of the original), and float images whose values lie in [0, 1] are scaled
    by 255; `meta["note"]` says so. 32-bit integer and other float images are refused: PIL's RGB conversion would
    clip them to garbage while the report claimed a small change.
    """
    path = Path(path)
    rel = relative(path, root) if root else PurePosixPath(path.name)
    with _opened(path) as (im, caught):
        raw = _raw_mode(im)
        im.load()
        icc = im.info.get("icc_profile")
        frames = getattr(im, "n_frames", 1)
        im = ImageOps.exif_transpose(im)  # display orientation; removes the Orientation tag
        exif = im.getexif().tobytes() if keep_exif and len(im.getexif()) else None
        mode = im.mode
    alpha, note = None, None
    if ";16" in raw and mode in (
        "RGB",
        "RGBA",
    ):  # PIL keeps the high byte of 16-bit colour (and grey + alpha)
        grey = raw.startswith("LA")
        if grey:
            im, mode = im.convert("LA"), "LA"  # exact: PIL opened it as RGBA with R = G = B
        note = f"16-bit {'greyscale' if grey else 'colour'} reduced to 8 bits (high bytes) before protecting"
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        im = im.convert("LA" if mode == "LA" else "RGBA")
        alpha = np.asarray(im.getchannel("A")).copy()
        im = im.convert("L" if mode == "LA" else "RGB")
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        im, note = _wide_to_grey(im, path)
    elif mode == "1":
        im = im.convert("L")
    elif mode == "P":
        im = im.convert("RGB")  # a palette expands to RGB exactly
    elif mode not in ("RGB", "L"):
        log.warning("%s: mode %s converted to RGB", path, mode)  # CMYK, YCbCr, LAB...: a colour conversion
        im, note = im.convert("RGB"), f"{mode} converted to RGB before protecting"
    pixels = np.asarray(im, dtype=np.uint8).copy()
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    notes = [note] if note else []
    if icc and not icc_describes(icc, pixels.shape[2]):
        notes.append(f"its ICC profile ({icc[16:20].decode('latin-1').strip() or '?'} data) was dropped")
        icc = None  # a CMYK profile on RGB pixels would make viewers render wrong colours
    if frames > 1:
        notes.append(f"only the first of {frames} frames was protected and saved")
    if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
        # PIL decodes up to twice its limit with a warning and refuses more (DecompressionBombError, in `_opened`)
        megapixels, limit = pixels.shape[0] * pixels.shape[1] / 1e6, (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        notes.append(
            f"{megapixels:.0f} megapixels, over PIL's decompression-bomb warning limit of {limit:.0f}: read, "
            "as it is under twice that; make sure it is a real photo"
        )
        log.warning("%s: %s", path, notes[-1])
    label = rel.parts[0] if len(rel.parts) > 1 else None
    return Picture(
        rel=rel,
        pixels=pixels,
        alpha=alpha,
        icc=icc,
        exif=exif,
        label=label,
        source=str(path),
        meta={"mode": mode} | ({"note": "; ".join(notes)} if notes else {}),
    )


def probe_image(path: str | Path) -> str | None:
    """Why `path` cannot be read as an image, judged from its header (nothing is decoded: cheap enough for a dry
    run over a large folder), else None. Pixel data damaged past the header is found only by `load_image`."""
    try:
        with _opened(Path(path)):
            return None
    except UnreadableImageError as e:
        return str(e)


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[tuple[Image.Image, list[warnings.WarningMessage]]]:
    """`Image.open`, with every way a file can fail to be an image (also while the body decodes it) turned into
    one `UnreadableImageError`, and PIL's decompression-bomb warnings recorded for the caller instead of printed."""
    if path.suffix.lower() in HEIC_SUFFIXES and not HEIC_READABLE:
        raise UnreadableImageError(
            f"cannot read {path}: HEIC needs the pillow-heif plugin (pip install pillow-heif)"
        )
    if path.is_symlink() and not path.exists():
        raise UnreadableImageError(
            f"cannot read {path}: a symbolic link to {os.readlink(path)}, which is missing"
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                yield im, caught
    except Image.DecompressionBombError as e:  # not an OSError: a huge or hostile file
        raise UnreadableImageError(f"cannot read {path}: too large to decode safely ({e})") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UnreadableImageError(f"cannot read {path}: {e}") from e


def _raw_mode(im: Image.Image) -> str:
    """How the file stores its pixels, as the decoder reads them ('RGB;16B' for a 48-bit PNG, whose mode PIL
    reports as plain 'RGB'); read before `load` clears it."""
    args = im.tile[0][3] if im.tile else ""  # the decoder's arguments; the raw mode first when a tuple
    raw = args[0] if isinstance(args, tuple) and args else args
    return raw if isinstance(raw, str) else ""


def icc_describes(icc: bytes, channels: int) -> bool:
    """Whether an ICC profile's colour space (header bytes 16-19, ICC.1:2022 section 7.2.6) fits the pixels
    that will be saved: 'RGB ' for 3 channels, 'GRAY' for 1."""
    return icc[16:20] == (b"RGB " if channels == 3 else b"GRAY")


def _wide_to_grey(im: Image.Image, path: Path) -> tuple[Image.Image, str]:
    """8-bit greyscale from a 16-bit or float image, by its nominal range (never PIL's clipping RGB conversion)."""
    values = np.asarray(im)
    if im.mode.startswith("I;16"):
        grey = np.rint(values.astype(np.float64) / 257.0)
        return Image.fromarray(
            grey.astype(np.uint8), "L"
        ), "16-bit greyscale reduced to 8 bits before protecting"
    if im.mode == "F" and np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1:
        grey = np.rint(values.astype(np.float64) * 255.0)
        return Image.fromarray(
            grey.astype(np.uint8), "L"
        ), "float greyscale scaled to 8 bits before protecting"
    kind = "float" if im.mode == "F" else "32-bit integer"
    raise UnreadableImageError(
        f"cannot read {path}: {kind} pixels (mode {im.mode}) have no defined 8-bit range; convert it to 8 or 16 bits"
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


def overlong_output(out: Path) -> str | None:
    """Why `out` cannot be written when its name is longer than a file name may be (`a.jpg.png`, `.webp`: an
    output name can be longer than its source's), else None."""
    if len(os.fsencode(out.name)) > NAME_MAX:
        return f"its output name {out.name!r} would exceed {NAME_MAX} bytes; rename it"
    return None


def plan_outputs(
    dst: str | Path, rels: Iterable[PurePosixPath], fmt: str = "png"
) -> dict[PurePosixPath, Path]:
    """Each source's output path, decided for the whole folder at once so no two sources share one.

    Sources whose mirrored outputs would collide (`a.jpg` and `a.png`, or `a.JPG` and `a.jpg`, compared
    case-insensitively because many disks are) keep their full name: `a.jpg.png`, `a.png.png`; a name that is still
    taken gets `-2`, `-3`... An output that would have the name of an output folder (`q.jpg` beside a folder `q.png/`)
    is renamed the same way. Everything else keeps the plain mirrored path. Sorted input makes the plan deterministic,
    so `--resume` finds the same outputs again.
    """
    rels = sorted(set(rels))
    natural = {rel: output_path(dst, rel, fmt) for rel in rels}
    counts = Counter(_fold(path) for path in natural.values())
    folders = {_fold(parent) for path in natural.values() for parent in path.parents}
    taken = set(counts) | folders
    plan: dict[PurePosixPath, Path] = {}
    for rel in rels:
        path = natural[rel]
        if counts[_fold(path)] > 1 or _fold(path) in folders:
            path, n = path.with_name(rel.name + path.suffix), 2
            while _fold(path) in taken:
                path, n = path.with_name(f"{rel.name}-{n}{path.suffix}"), n + 1
            taken.add(_fold(path))
        plan[rel] = path
    return plan


def _fold(path: Path) -> str:
    return path.as_posix().casefold()


def fit_format(picture: Picture, fmt: str) -> Picture:
    """The picture as `fmt` can hold it, before protecting (so the protection is computed on, and the report
    measures, what the file will hold), with a note of what changed: JPEG has no alpha channel, so alpha is
    flattened onto white; WebP has no greyscale, so grey is saved as RGB and a GRAY ICC profile, which would
    describe the wrong pixels, is dropped."""
    if fmt == "jpeg" and picture.alpha is not None:
        a = picture.alpha[:, :, None].astype(np.float64) / 255.0
        flat = np.rint(picture.pixels * a + 255.0 * (1.0 - a)).astype(np.uint8)
        return _noted(
            replace(picture, pixels=flat, alpha=None),
            "alpha flattened onto white (JPEG has no alpha channel)",
        )
    if fmt == "webp" and picture.pixels.shape[2] == 1:
        dropped = ", its GRAY ICC profile dropped" if picture.icc else ""
        return _noted(replace(picture, icc=None), f"WebP has no greyscale: saved as RGB{dropped}")
    return picture


def _noted(picture: Picture, note: str) -> Picture:
    notes = [picture.meta.get("note"), note]
    return replace(picture, meta=picture.meta | {"note": "; ".join(filter(None, notes))})


def encode(picture: Picture, fmt: str = "png", quality: int = 95) -> bytes:
    """Encode a picture in `fmt` (as `fit_format` left it), keeping ICC (and EXIF when the picture carries it).

    Lossy WebP keeps the colour under fully transparent pixels (`exact`): by default libwebp replaces it to
    compress better, which changes the saved colour pixels by up to 255 levels where nobody sees them, far outside
    the promised eps, and would wipe a watermark there.
    """
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
        kwargs.update(quality=quality, exact=True)
    buf = io.BytesIO()
    im.save(buf, format=fmt.upper(), **kwargs)
    return buf.getvalue()


def decode_pixels(data: bytes, like: Picture) -> np.ndarray:
    """Decode `encode`'s output back to the colour pixels, to measure exactly what was saved."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own file: noted when read
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("L" if like.pixels.shape[2] == 1 else "RGB"), dtype=np.uint8)
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
    y: np.ndarray | None = None  # (N,) or Keras' (N, 1), saved back as it came
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "the .npz"  # named in errors

    @property
    def labels(self) -> np.ndarray | None:
        """One label per image, shape (N,)."""
        return None if self.y is None else self.y.reshape(-1)

    def texts(self, *keys: str) -> list[str] | None:
        """The first of the extra arrays `keys` (class names, captions) as a list of texts, None if absent; one
        ConfigError unless it is a 1-D array (a lone string would iterate as nothing, or letter by letter)."""
        key = next((k for k in keys if k in self.extras), None)
        if key is None:
            return None
        values = self.extras[key]
        if values.ndim == 2 and values.shape[1] == 1:  # (N, 1), as labels may be
            values = values.reshape(-1)
        if values.ndim != 1:
            raise ConfigError(
                f"{self.source}: '{key}' must be a list of texts, got shape {tuple(values.shape)}"
            )
        if values.dtype.kind == "S":  # bytes (np.bytes_, Python 2 era files): str() would give "b'cat'"
            try:
                return [v.decode("utf-8") for v in values]
            except UnicodeDecodeError as e:
                raise ConfigError(f"{self.source}: '{key}' holds bytes that are not UTF-8 text") from e
        if values.dtype.kind not in "Uiu":  # texts, or whole numbers used as names
            raise ConfigError(f"{self.source}: '{key}' must hold texts, got {values.dtype}")
        return [str(v) for v in values]

    def class_names(self) -> list[str] | None:
        """`classes` (or `class_names`) as texts that can name a class: unique, not blank, on one line (no control
        or line-separator characters; other invisible ones, such as a no-break space or a joiner, are text)."""
        names = self.texts("classes", "class_names")
        for name in names or []:
            if not name.strip() or any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
                raise ConfigError(f"{self.source}: class name {name!r} is blank or holds a control character")
        if names is not None and len(set(names)) < len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"{self.source}: class name {dup!r} appears more than once")
        return names

    def class_ids(self, n_classes: int | None = None) -> np.ndarray:
        """The labels as int64 class indexes, each in 0..n_classes-1 (or, unnamed, below `MAX_CLASS_ID`), or one
        ConfigError (a float label would be cut, b"1" read as 1, a bool taken for a mask, a large one index past
        the end, a uint64 one wrap to a negative int64)."""
        y = self.labels
        if y is None:
            raise ConfigError(f"{self.source} has no labels 'y'")
        if not np.issubdtype(y.dtype, np.integer):
            raise ConfigError(
                f"{self.source}: labels 'y' must be integers 0..K-1 (class names go in 'classes'), got {y.dtype}"
            )
        if n_classes == 0:
            raise ConfigError(f"{self.source}: the list of class names is empty")
        lo, hi = int(y.min()), int(y.max())  # Python ints: exact for every integer dtype
        top = MAX_CLASS_ID if n_classes is None else n_classes - 1
        if lo < 0 or hi > top:
            named = "" if n_classes is None else f" for {n_classes} class names"
            raise ConfigError(f"{self.source}: labels must lie in 0..{top}, found {lo}..{hi}{named}")
        return y.astype(np.int64)


# unnamed classes are named by their ids: a label of 2**40 would ask for 10**12 names
MAX_CLASS_ID = (1 << 20) - 1


Headers = dict[str, tuple[tuple[int, ...], np.dtype]]  # array name -> (shape, dtype) its header declares


def npz_headers(path: str | Path) -> Headers:
    """What each array of an `.npz` declares, from the headers alone (nothing is decompressed), so that sizes can
    be refused before reading. A lone `.npy` saved under an `.npz` name, or a file that is no zip, is a ValueError
    (np.load would try unpickling it, and say so: advice to allow pickles for a file that holds none). A member
    in a header format this does not read is left out (np.load then checks it)."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
        if magic == b"\x93NUMPY":
            raise ValueError("it holds a single .npy array, not an .npz archive of named arrays (np.savez)")
        if not zipfile.is_zipfile(fh):
            if magic.startswith(b"PK"):
                raise ValueError("it is a damaged or truncated zip (an interrupted download or copy?)")
            raise ValueError("it is not an .npz archive (the zip of named arrays that np.savez writes)")
    headers: Headers = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            with archive.open(member) as npy:
                version = np.lib.format.read_magic(npy)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(npy)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(npy)
                else:
                    continue
            headers[member[: -len(".npy")]] = (tuple(shape), dtype)
    return headers


def npz_arrays(path: str | Path, headers: Headers | None = None) -> dict[str, np.ndarray]:
    """Every array of an `.npz` (no pickles); `headers` are its `npz_headers`, when the caller has read them.

    Arrays whose headers declare more bytes than the machine has memory are a ValueError before reading (a
    compressed archive of zeros can be 1000 times smaller), like any other unreadable file.
    """
    headers = npz_headers(path) if headers is None else headers
    declared = sum(math.prod(shape) * dtype.itemsize for shape, dtype in headers.values())
    memory = _physical_memory()
    if memory and declared > memory:
        raise ValueError(
            f"its arrays hold {declared / 2**30:.1f} GiB, more than this machine's {memory / 2**30:.1f}"
        )
    with np.load(path, allow_pickle=False) as data:  # a zip: always an NpzFile
        try:
            return {k: data[k] for k in data.files}
        except MemoryError as e:  # more than is free now
            raise ValueError(f"its arrays do not fit in memory ({e})") from e
        except (RuntimeError, NotImplementedError) as e:  # an encrypted member, an unknown compression method
            raise ValueError(f"its zip cannot be read ({e})") from e


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: np.load's MemoryError is the check
        return None


def _check_npz_images(headers: Headers) -> None:
    """Refuse images larger than a folder's may be (PIL's decompression-bomb limit) before decompressing them:
    zeros compress 1000 to 1, so a 1 MB archive can hold 2 GB of pixels."""
    shape = headers["x"][0] if "x" in headers else ()
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 1 << 62)
    if len(shape) == 4 and shape[1] * shape[2] > limit:
        raise ValueError(
            f"its images of {shape[2]}x{shape[1]} pixels are too large to process safely (the limit for image "
            f"files too: {limit} pixels)"
        )


def load_npz(path: str | Path) -> ArrayDataset:
    """Read an `.npz` holding `x` (N,H,W,C uint8) and optional `y`; wrong shapes give one clear error."""
    try:
        headers = npz_headers(path)
        _check_npz_images(headers)
        arrays = npz_arrays(path, headers)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ConfigError(f"cannot read {path} as .npz: {e}") from e
    if "x" not in arrays:
        raise ConfigError(f"{path} has no array named 'x' (found: {', '.join(arrays) or 'nothing'})")
    x = arrays.pop("x")
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ConfigError(f"{path}: 'x' must be uint8 (N, H, W, C) with C in (1, 3); got {x.dtype} {x.shape}")
    if not x.size:
        raise ConfigError(f"{path}: 'x' holds no images (shape {x.shape})")
    y = arrays.pop("y", None)
    if y is not None and (y.shape not in ((len(x),), (len(x), 1))):
        raise ConfigError(
            f"{path}: 'y' must hold one label per image, shape ({len(x)},) or ({len(x)}, 1); got shape "
            f"{tuple(y.shape)}"
        )
    return ArrayDataset(x=x, y=y, extras=arrays, source=str(path))


def save_npz(path: str | Path, dataset: ArrayDataset) -> None:
    """Write an `.npz` atomically, with the same array names that `load_npz` reads."""
    arrays = {"x": dataset.x, **dataset.extras}
    if dataset.y is not None:
        arrays["y"] = dataset.y
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
