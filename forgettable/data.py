"""Labelled image sets for training and audits: an image folder (one sub-folder per class) or an `.npz`.

An `.npz` holds `x` (N, H, W, C uint8), `y` (N,) and class names in `classes` or `class_names` (the shared
CIFAR-10 subset uses `classes`); without names, classes are called "0", "1", ...
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from protect.errors import ConfigError
from protect.imageio import find_images, load_image, load_npz

log = logging.getLogger(__name__)


@dataclass
class LabeledImages:
    """uint8 images (N, H, W, C), integer labels (N,) and one name per label."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> LabeledImages:
        return LabeledImages(self.x[index], self.y[index], list(self.class_names))

    def of_class(self, name: str) -> LabeledImages:
        return self.take(np.flatnonzero(self.y == self.class_names.index(name)))

    def without(self, names: list[str]) -> LabeledImages:
        """The set minus classes `names`, relabelled 0..K-1 in the original order (the oracle's data)."""
        keep = [n for n in self.class_names if n not in names]
        old = np.array([self.class_names.index(n) for n in keep])
        mask = np.isin(self.y, old)
        remap = np.full(len(self.class_names), -1)
        remap[old] = np.arange(len(keep))
        return LabeledImages(self.x[mask], remap[self.y[mask]], keep)

    def fingerprint(self) -> str:
        """SHA-256 of images and labels: ties a model's recorded train/held-out split to this data."""
        digest = hashlib.sha256(np.ascontiguousarray(self.x).tobytes())
        digest.update(np.asarray(self.y, np.int64).tobytes())
        return digest.hexdigest()


def load_labeled(path: str | Path, *, image_size: int | None = None) -> LabeledImages:
    """Read DATA: an `.npz` or a folder with one sub-folder per class (images resized to `image_size`)."""
    path = Path(path)
    if path.suffix == ".npz":
        data = load_npz(path)
        names = data.class_names()
        y = data.class_ids(None if names is None else len(names))
        return LabeledImages(data.x, y, names or [str(i) for i in range(int(y.max()) + 1)])
    if not path.is_dir():
        raise ConfigError(f"{path} is neither an .npz nor a folder of class sub-folders")
    found = find_images(path)
    files = [f for f in found if f.parent != path]
    if len(files) < len(found):
        log.warning(
            "ignoring %d image(s) directly in %s: only class sub-folders are read",
            len(found) - len(files),
            path,
        )
    labels = sorted({f.relative_to(path).parts[0] for f in files})
    if len(labels) < 2:
        raise ConfigError(f"{path} needs one sub-folder per class (at least 2) holding images")
    pictures = [load_image(f, root=path) for f in files]
    size = image_size or max(max(p.height, p.width) for p in pictures)
    colour = any(p.pixels.shape[-1] == 3 for p in pictures)
    x = np.stack([_square(p.pixels, size, colour) for p in pictures])
    y = np.array([labels.index(f.relative_to(path).parts[0]) for f in files], dtype=np.int64)
    return LabeledImages(x, y, labels)


def _square(pixels: np.ndarray, size: int, colour: bool) -> np.ndarray:
    img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    img = img.convert("RGB" if colour else "L").resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(img)
    return arr if arr.ndim == 3 else arr[..., None]


def split_holdout(data: LabeledImages, *, fraction: float, seed: int) -> tuple[LabeledImages, LabeledImages]:
    """A stratified (train, held-out) split, reproducible from (fraction, seed): the audit's non-members."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"holdout fraction must lie in [0, 1), got {fraction}")
    held = []
    for c, name in enumerate(data.class_names):
        # Seeded per class *name*: removing a class (the oracle's data) keeps the others' split.
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        idx = rng.permutation(np.flatnonzero(data.y == c))
        held.extend(idx[: int(round(fraction * len(idx)))])
    mask = np.zeros(len(data), bool)
    mask[np.array(held, dtype=np.int64)] = True
    return data.take(np.flatnonzero(~mask)), data.take(np.flatnonzero(mask))
