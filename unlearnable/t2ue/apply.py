"""The local step of T2UE: add caption-generated noise to images (the only place images and noise meet).

Noise files (`protect t2ue noise`) are `.npz` archives: `delta` float16 (M, H, W, 3) in [0, 1] pixel units
(`half_toward_zero`; files written before are float32 and load the same),
`captions` (M), and either `files` (M paths relative to the image folder, from the captions CSV) or `classes`
(M class names, class-wise noise applied by label). Writing goes through `protect.batch.CopyJob`, so outputs,
reports, `--resume` and the never-touch-originals rule are exactly those of `protect images`.

Under zero contact the noise file may come from someone else, so its own bound is never trusted: applying checks it
against a local cap (`--epsilon`, default 8/255) and refuses non-finite noise.
"""

from __future__ import annotations

import hashlib
import logging
import math
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from protect.batch import CopyJob, WriteOptions
from protect.errors import ConfigError, IntegrityError
from protect.imageio import ArrayDataset, npz_arrays, relative
from protect.paths import atomic_path
from unlearnable.t2ue.data import clean_file_name

log = logging.getLogger(__name__)

DEFAULT_CAP = 8 / 255
#: float32 slack when comparing a bound with the cap ([0, 1] units; 1e-6 is 0.0003 of one 8-bit level)
TOLERANCE = 1e-6


@dataclass
class NoiseSet:
    """Generated perturbations plus what they were generated from (never the images)."""

    delta: np.ndarray
    captions: list[str]
    files: list[str] | None = None
    classes: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = tuple(self.delta.shape)
        if len(shape) != 4 or shape[-1] != 3 or 0 in shape:
            raise IntegrityError(f"noise 'delta' must have shape (N, H, W, 3) with N, H, W > 0, got {shape}")
        for name in ("captions", "files", "classes"):
            values = getattr(self, name)
            if values and len(values) != len(self.delta):
                raise IntegrityError(f"noise has {len(self.delta)} perturbations but {len(values)} {name}")

    @property
    def eps(self) -> float:
        return float(self.meta.get("eps", float(np.abs(self.delta).max(initial=0.0))))

    def save(self, path: str | Path) -> None:
        """Write the `.npz` atomically (plain arrays only, readable with `allow_pickle=False`)."""
        arrays: dict[str, np.ndarray] = {
            "delta": half_toward_zero(self.delta),
            "captions": np.array(self.captions),
        }
        if self.files is not None:
            arrays["files"] = np.array(self.files)
        if self.classes is not None:
            arrays["classes"] = np.array(self.classes)
        for k, v in self.meta.items():
            arrays[f"meta_{k}"] = np.array(v)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> NoiseSet:
        try:
            arrays = npz_arrays(path)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise IntegrityError(f"cannot read noise file {path} (truncated or not an .npz?): {e}") from e
        delta = arrays.get("delta")
        if delta is None or delta.ndim != 4 or delta.shape[-1] != 3:
            raise IntegrityError(f"{path} is not a T2UE noise file (needs 'delta' of shape (N, H, W, 3))")
        if not (np.issubdtype(delta.dtype, np.floating) or np.issubdtype(delta.dtype, np.integer)):
            raise IntegrityError(f"{path}: 'delta' must be numbers, got dtype {delta.dtype}")
        bad_meta = [k for k in arrays if k.startswith("meta_") and arrays[k].size != 1]
        if bad_meta:
            raise IntegrityError(f"{path}: {bad_meta[0]} must hold a single value")
        names = lambda k: [str(v) for v in arrays[k].reshape(-1)] if k in arrays else None  # noqa: E731
        meta = {k[5:]: arrays[k].item() for k in arrays if k.startswith("meta_")}
        return cls(
            delta=arrays["delta"].astype(np.float32),
            captions=names("captions") or [],
            files=names("files"),
            classes=names("classes"),
            meta=meta,
        )


def half_toward_zero(delta: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """`delta` as float16, each value rounded toward zero: half the file of float32 (224x224 noise for 10k
    photos is 3 GB, not 6), and no value grows, so every bound the noise met still holds. float16 keeps 11
    significant bits: below 1/16 (about 16/255) a value loses at most 0.008 of an 8-bit level. Converted
    `chunk` perturbations at a time, so the temporaries stay small beside the result."""
    out = np.empty(delta.shape, np.float16)
    for i in range(0, len(delta), chunk):
        part = np.asarray(delta[i : i + chunk], np.float32)
        with np.errstate(over="ignore"):  # beyond 65504 becomes inf: invalid noise, refused when applied
            half = part.astype(np.float16)
        grew = np.abs(half.astype(np.float32)) > np.abs(part)
        half[grew] = np.nextafter(half[grew], np.float16(0))
        out[i : i + chunk] = half
    return out


def add_noise(pixels: np.ndarray, delta: np.ndarray, eps: float) -> np.ndarray:
    """uint8 HxWxC + delta ([0, 1] units, resized to fit) -> uint8 whose change is at most floor(eps * 255).

    Refuses delta that is non-finite or exceeds eps; rounding to 8 bits is clipped to the cap, so a saved copy never
    changes more than eps allows (e.g. eps 0.03 = 7.65/255 gives at most 7, not a rounded-up 8).
    """
    largest = largest_change(delta)
    if largest > eps + TOLERANCE:
        raise IntegrityError(
            f"perturbation of {largest * 255:.2f}/255 exceeds the bound {eps * 255:.2f}/255; the noise is invalid"
        )
    h, w, c = pixels.shape
    if delta.shape[:2] != (h, w):  # bilinear = convex combination, so the bound survives resizing
        t = torch.from_numpy(np.ascontiguousarray(delta)).permute(2, 0, 1)[None]
        delta = (
            F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
        )
    if c == 1:
        delta = delta.mean(axis=2, keepdims=True)
    level = cap_levels(eps)
    change = np.clip(np.rint(delta * 255.0), -level, level).astype(np.int16)
    return np.clip(pixels.astype(np.int16) + change, 0, 255).astype(np.uint8)


def largest_change(delta: np.ndarray) -> float:
    """max |delta|, after refusing NaN and infinities (they pass through every clip and compare as false)."""
    if not np.isfinite(delta).all():
        raise IntegrityError("the noise contains NaN or infinite values; regenerate it")
    return float(np.abs(delta).max(initial=0.0))


def cap_levels(eps: float) -> int:
    """The largest whole 8-bit change within eps (8/255 -> 8, 0.03 -> 7)."""
    return math.floor(eps * 255 + TOLERANCE * 255)


def check_noise(noise: NoiseSet, cap: float) -> None:
    """Refuse noise that is non-finite, claims a bound above `cap`, or actually exceeds it (one line each).

    The noise may have been generated by someone else, so neither its `meta_eps` nor its values are trusted.
    """
    if not (isinstance(cap, (int, float)) and math.isfinite(cap) and 0 < cap <= 1):
        raise ConfigError(f"the epsilon cap must lie in (0, 1], got {cap!r}")
    largest = largest_change(noise.delta)
    claimed = noise.meta.get("eps")
    if claimed is not None:
        try:
            claimed = float(claimed)
        except (TypeError, ValueError):
            raise IntegrityError(f"the noise file's bound meta_eps is not a number: {claimed!r}") from None
        if not (math.isfinite(claimed) and claimed > 0):
            raise IntegrityError(f"the noise file's bound meta_eps must be a positive number, got {claimed}")
        if claimed > cap + TOLERANCE:
            raise ConfigError(
                f"the noise file's bound {claimed * 255:.2f}/255 exceeds the cap --epsilon {cap * 255:.2f}/255; "
                "refusing it (raise --epsilon only if you trust where the noise came from)"
            )
    if largest > cap + TOLERANCE:
        raise ConfigError(
            f"the noise changes pixels by up to {largest * 255:.2f}/255, above the cap --epsilon "
            f"{cap * 255:.2f}/255; refusing it"
        )


def noise_digest(noise: NoiseSet) -> str:
    """SHA-256 of the perturbations and what they match on, so `--resume` notices a regenerated noise file."""
    h = hashlib.sha256(np.ascontiguousarray(noise.delta, dtype=np.float32).tobytes())
    h.update(repr(tuple(noise.delta.shape)).encode())
    for names in (noise.files, noise.classes):
        h.update(b"\x00".join(n.encode() for n in names or []) + b"\x01")
    return h.hexdigest()


def resize_note(delta: np.ndarray, pixels: np.ndarray) -> str | None:
    """A report note when the noise had to be resized to the image (it was generated at another size)."""
    if tuple(delta.shape[:2]) == tuple(pixels.shape[:2]):
        return None
    return f"noise {delta.shape[0]}x{delta.shape[1]} resized to {pixels.shape[0]}x{pixels.shape[1]}"


def _as_noise(noise: str | Path | np.ndarray | NoiseSet) -> NoiseSet:
    if isinstance(noise, NoiseSet):
        return noise
    if isinstance(noise, np.ndarray):
        return NoiseSet(delta=noise.astype(np.float32), captions=[])
    return NoiseSet.load(noise)


def apply_noise(
    noise_npz_or_array: str | Path | np.ndarray | NoiseSet,
    src: str | Path,
    dst: str | Path,
    *,
    eps: float = DEFAULT_CAP,
    options: WriteOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> int:
    """Add noise to a folder or `.npz` of images, write protected copies and reports; returns the exit status (0/2)."""
    return write_protected(noise_npz_or_array, src, dst, eps=eps, options=options, settings=settings).finish()


def write_protected(
    noise_npz_or_array: str | Path | np.ndarray | NoiseSet,
    src: str | Path,
    dst: str | Path,
    *,
    eps: float = DEFAULT_CAP,
    options: WriteOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> CopyJob:
    """Write the protected copies; the caller calls `finish()` on the returned job (reports, exit status).

    `eps` is the local cap: noise whose bound or values exceed it is refused before anything is written.
    Matching: class-wise noise (`classes`) by label (the image's top folder, or `y` of an `.npz`); noise with `files`
    by relative path; otherwise by position (sorted folder order, or `.npz` order), which needs equal counts.
    Every saved copy satisfies max |saved - original| <= floor(eps * 255) for lossless formats; noise resized to an
    image is noted in that image's report row.
    """
    noise = _as_noise(noise_npz_or_array)
    check_noise(noise, eps)
    job = CopyJob(
        Path(src),
        Path(dst),
        settings={"method": "t2ue", "epsilon": eps, "noise_sha256": noise_digest(noise), **(settings or {})},
        options=options or WriteOptions(),
    )
    with job.released_on_error():
        if job.is_npz:
            data = job.load_dataset()
            deltas = _npz_deltas(noise, data)
            job.write_dataset(
                data, np.stack([add_noise(x, d, eps) for x, d in zip(data.x, deltas, strict=True)])
            )
            for row, x, d in zip(job.rows, data.x, deltas, strict=True):
                if note := resize_note(d, x):
                    row["note"] = note
            return job
        by_file = _by_file(noise)
        by_class = dict(zip(noise.classes, noise.delta, strict=True)) if noise.classes else None
        order = None
        if by_file is None and by_class is None:
            everything = job.sources()
            if len(everything) != len(noise.delta):
                raise ConfigError(
                    f"{len(noise.delta)} noise entries for {len(everything)} images and no file names to "
                    "match them; generate the noise from a captions CSV with a `file` column"
                )
            order = {str(p): i for i, p in enumerate(everything)}
        for path in job.pending():
            picture = job.load(path)
            if picture is None:
                continue
            if by_class is not None:
                delta = by_class.get(picture.label or "")
                missing = (
                    f"its folder {picture.label!r} is not one of the noise classes"
                    if picture.label
                    else "it lies in no class sub-folder, and class-wise noise is applied by folder name"
                ) + f" ({', '.join(by_class)})"
            elif by_file is not None:
                delta = by_file.get(_file_key(picture.rel.as_posix()))
                missing = "no caption for this file in the captions CSV"
            else:
                delta, missing = noise.delta[order[str(path)]], ""
            if delta is None:
                job.skip(path, missing)
                continue
            notes = [picture.meta.get("note"), resize_note(delta, picture.pixels)]
            extra = {"note": "; ".join(n for n in notes if n)} if notes[1] else {}
            job.write(picture, add_noise(picture.pixels, delta, eps), **extra)
        if by_file is not None:
            _warn_unused(by_file, job)
        return job


def _warn_unused(by_file: dict[str, np.ndarray], job: CopyJob) -> None:
    """Say how many noise entries matched no image in SRC: a renamed folder or a CSV of another set would
    otherwise protect only part of what the owner thinks it does, with no sign of it."""
    present = {_file_key(relative(p, job.src).as_posix()) for p in job.sources()}
    unused = sorted(set(by_file) - present)
    if unused:
        log.warning(
            "%d of %d noise entries match no image in %s (e.g. %s): check the captions CSV's file names",
            len(unused),
            len(by_file),
            job.src,
            ", ".join(map(repr, unused[:3])),
        )


def _by_file(noise: NoiseSet) -> dict[str, np.ndarray] | None:
    """Noise by normalised relative path (`_file_key`); two entries for one file would silently drop one, so
    that is refused."""
    if not noise.files:
        return None
    names = [_file_key(f) for f in noise.files]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise IntegrityError(f"the noise file lists {dup!r} more than once")
    return dict(zip(names, noise.delta, strict=True))


def _file_key(name: str) -> str:
    """How a captions CSV's file name meets a file on disk: as a clean relative path in Unicode NFC, since the
    same name is often NFD on disk (macOS writes `é` as e + U+0301) and NFC in a spreadsheet."""
    return unicodedata.normalize("NFC", clean_file_name(name))


def _npz_deltas(noise: NoiseSet, data: ArrayDataset) -> np.ndarray:
    """One delta per image of `data`: in order, or by label for class-wise noise (`y` indexes the archive's own
    `classes` when it has them, else the noise's)."""
    if noise.classes is None:
        if len(noise.delta) != len(data.x):
            raise ConfigError(f"{len(noise.delta)} noise entries for {len(data.x)} images")
        return noise.delta
    if data.y is None:
        raise ConfigError("class-wise noise needs labels: the .npz has no 'y'")
    names = data.texts("classes")  # a repeated name (ImageNet's "crane") maps to the same noise
    if names is None:
        return noise.delta[data.class_ids(len(noise.classes))]
    unknown = sorted(set(names) - set(noise.classes))
    if unknown:
        raise ConfigError(f"no noise for class(es) {', '.join(map(repr, unknown))}")
    lookup = np.array([noise.classes.index(c) for c in names])
    return noise.delta[lookup[data.class_ids(len(names))]]
