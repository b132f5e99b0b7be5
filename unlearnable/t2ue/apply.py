"""The local step of T2UE: add caption-generated noise to images (the only place images and noise meet).

Noise files (`protect t2ue noise`) are `.npz` archives: `delta` float32 (M, H, W, 3) in [0, 1] pixel units,
`captions` (M), and either `files` (M paths relative to the image folder, from the captions CSV) or `classes`
(M class names, class-wise noise applied by label). Writing goes through `protect.batch.CopyJob`, so outputs,
reports, `--resume` and the never-touch-originals rule are exactly those of `protect images`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from protect.batch import CopyJob, WriteOptions
from protect.errors import ConfigError, IntegrityError
from protect.imageio import find_images
from protect.paths import atomic_path


@dataclass
class NoiseSet:
    """Generated perturbations plus what they were generated from (never the images)."""

    delta: np.ndarray
    captions: list[str]
    files: list[str] | None = None
    classes: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
            "delta": self.delta.astype(np.float32),
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
            with np.load(path, allow_pickle=False) as d:
                arrays = {k: d[k] for k in d.files}
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read noise file {path}: {e}") from e
        if "delta" not in arrays or arrays["delta"].ndim != 4 or arrays["delta"].shape[-1] != 3:
            raise IntegrityError(f"{path} is not a T2UE noise file (needs 'delta' of shape (N, H, W, 3))")
        names = lambda k: [str(v) for v in arrays[k]] if k in arrays else None  # noqa: E731
        meta = {k[5:]: arrays[k].item() for k in arrays if k.startswith("meta_")}
        return cls(
            delta=arrays["delta"].astype(np.float32),
            captions=names("captions") or [],
            files=names("files"),
            classes=names("classes"),
            meta=meta,
        )


def add_noise(pixels: np.ndarray, delta: np.ndarray, eps: float) -> np.ndarray:
    """uint8 HxWxC + delta ([0, 1] units, resized to fit) -> clipped, rounded uint8; checks the 8-bit bound."""
    h, w, c = pixels.shape
    if delta.shape[:2] != (h, w):  # bilinear = convex combination, so the bound survives resizing
        t = torch.from_numpy(np.ascontiguousarray(delta)).permute(2, 0, 1)[None]
        delta = (
            F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
        )
    if c == 1:
        delta = delta.mean(axis=2, keepdims=True)
    out = np.clip(np.rint(pixels.astype(np.float32) + delta * 255.0), 0, 255).astype(np.uint8)
    bound = math.ceil(eps * 255 - 1e-6)
    change = int(np.abs(out.astype(np.int16) - pixels.astype(np.int16)).max(initial=0))
    if change > bound:
        raise IntegrityError(
            f"perturbation of {change}/255 exceeds the bound {bound}/255; the noise file is invalid"
        )
    return out


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
    options: WriteOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> int:
    """Add noise to a folder or `.npz` of images, write protected copies and reports; returns the exit status (0/2)."""
    return write_protected(noise_npz_or_array, src, dst, options=options, settings=settings).finish()


def write_protected(
    noise_npz_or_array: str | Path | np.ndarray | NoiseSet,
    src: str | Path,
    dst: str | Path,
    *,
    options: WriteOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> CopyJob:
    """Write the protected copies; the caller calls `finish()` on the returned job (reports, exit status).

    Matching: class-wise noise (`classes`) by label (the image's top folder, or `y` of an `.npz`); noise with `files`
    by relative path; otherwise by position (sorted folder order, or `.npz` order), which needs equal counts.
    Every saved copy satisfies max |saved - original| <= ceil(eps * 255) for lossless formats.
    """
    noise = _as_noise(noise_npz_or_array)
    eps = noise.eps
    job = CopyJob(
        Path(src),
        Path(dst),
        settings={"method": "t2ue", "epsilon": eps, **(settings or {})},
        options=options or WriteOptions(),
    )
    if job.is_npz:
        data = job.load_dataset()
        deltas = _npz_deltas(noise, data.y, data.extras.get("classes"), len(data.x))
        job.write_dataset(data, np.stack([add_noise(x, d, eps) for x, d in zip(data.x, deltas, strict=True)]))
        return job
    by_file = dict(zip(noise.files, noise.delta, strict=True)) if noise.files else None
    by_class = dict(zip(noise.classes, noise.delta, strict=True)) if noise.classes else None
    order = None
    if by_file is None and by_class is None:
        everything = find_images(job.src)
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
            missing = f"its folder {picture.label!r} is not one of the noise classes"
        elif by_file is not None:
            delta = by_file.get(picture.rel.as_posix())
            missing = "no caption for this file in the captions CSV"
        else:
            delta, missing = noise.delta[order[str(path)]], ""
        if delta is None:
            job.skip(path, missing)
            continue
        job.write(picture, add_noise(picture.pixels, delta, eps))
    return job


def _npz_deltas(noise: NoiseSet, y: np.ndarray | None, data_classes: np.ndarray | None, n: int) -> np.ndarray:
    if noise.classes is None:
        if len(noise.delta) != n:
            raise ConfigError(f"{len(noise.delta)} noise entries for {n} images")
        return noise.delta
    if y is None:
        raise ConfigError("class-wise noise needs labels: the .npz has no 'y'")
    if data_classes is not None:
        names = [str(c) for c in data_classes]
        unknown = sorted(set(names) - set(noise.classes))
        if unknown:
            raise ConfigError(f"no noise for class(es) {', '.join(unknown)}")
        lookup = np.array([noise.classes.index(c) for c in names])
        return noise.delta[lookup[y]]
    if int(y.max()) >= len(noise.classes):
        raise ConfigError(f"label {int(y.max())} has no noise ({len(noise.classes)} classes)")
    return noise.delta[y]
