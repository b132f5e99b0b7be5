"""A fixed, public set of *other* classes for folders that hold a single class.

The Bayes error of a one-class sample is zero whatever the perturbation, so a folder of one person's photos has nothing
to be confused with. We add anchors: random crops of scikit-image's bundled public-domain / CC0 photographs (ten
scenes: astronaut, coffee, cat, rocket, deep field, micrograph, retina, grass, gravel, moon), each scene one class.
BEO then raises the Bayes error of "your photos vs. these classes", i.e. pushes your photos' features into the regions
of unrelated classes. The anchors are never perturbed and never written; they ship with scikit-image, so nothing is
downloaded.
"""

from __future__ import annotations

import numpy as np
import skimage.data
from PIL import Image

REFERENCE_PREFIX = "reference:"  # label prefix of the bundled reference images (never a user's class)

SCENES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "grass",
    "gravel",
    "moon",
)


def reference_images(*, size: int, per_class: int = 12, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """`per_class` random crops of each scene, as uint8 (size, size, 3) images, with their scene names as labels."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for name in SCENES:
        img = getattr(skimage.data, name)()
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        h, w = img.shape[:2]
        for _ in range(per_class):
            side = int(rng.uniform(0.3, 0.8) * min(h, w))
            top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = Image.fromarray(img[top : top + side, left : left + side, :3])
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            images.append(np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC)))
            labels.append(f"{REFERENCE_PREFIX}{name}")
    return images, labels
