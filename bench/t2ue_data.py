"""Image-caption data for the T2UE benchmark, built without downloads (see bench/T2UE_DATA.md).

1. Procedural scenes: one shape on a background, 32x32, captioned from its attributes:
   shape (4) x colour (6) x quadrant (4) x size (2) x background (3) = 576 distinct scenes, with per-image jitter
   (position +-2 px, colour +-12, pixel noise) and 4 caption templates. Retrieval counts a hit when the retrieved item
   shows the same attribute tuple (so duplicate scenes are not counted as misses).
2. The CIFAR-10 subset in ../shared/data (JPEG-compressed public CIFAR-10, 1000 train / 200 test images per class),
   captioned with 8 varied templates ("a blurry photo of a dog", ...).
"""

from __future__ import annotations

import itertools

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (45, 75, 215),
    "yellow": (230, 205, 40),
    "purple": (145, 55, 185),
    "white": (235, 235, 235),
}
QUADRANTS = {"top left": (8, 8), "top right": (8, 24), "bottom left": (24, 8), "bottom right": (24, 24)}
SIZES = {"small": 3.5, "large": 6.5}
BACKGROUNDS = {"gray": (120, 120, 120), "black": (22, 22, 30), "brown": (105, 75, 45)}
SCENE_TEMPLATES = (
    "a {size} {colour} {shape} in the {quadrant} on a {background} background",
    "{size} {colour} {shape}, {quadrant} corner, {background} background",
    "a {background} picture with a {size} {colour} {shape} in the {quadrant}",
    "there is a {size} {colour} {shape} at the {quadrant} of a {background} image",
)
CIFAR_TEMPLATES = (
    "a photo of a {}",
    "a blurry photo of a {}",
    "a close-up photo of the {}",
    "a low resolution photo of a {}",
    "a cropped photo of a {}",
    "a picture of a {}",
    "a bright photo of the {}",
    "a small photo of a {}",
)
SCENES = list(itertools.product(SHAPES, COLOURS, QUADRANTS, SIZES, BACKGROUNDS))


def render_scene(scene: tuple[str, str, str, str, str], rng: np.random.Generator) -> np.ndarray:
    """One 32x32 RGB uint8 image of `scene` = (shape, colour, quadrant, size, background)."""
    shape, colour, quadrant, size, background = scene
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    cy, cx = np.array(QUADRANTS[quadrant], np.float32) + rng.uniform(-2, 2, 2)
    r = SIZES[size]
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        mask = dy**2 + dx**2 <= r**2
    elif shape == "square":
        mask = (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    elif shape == "triangle":
        mask = (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    else:
        mask = ((np.abs(dy) <= r) & (np.abs(dx) <= r / 3)) | ((np.abs(dx) <= r) & (np.abs(dy) <= r / 3))
    img = np.empty((32, 32, 3), np.float32)
    img[:] = np.array(BACKGROUNDS[background], np.float32) + rng.uniform(-12, 12, 3)
    img[mask] = np.array(COLOURS[colour], np.float32) + rng.uniform(-12, 12, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_scenes(n: int, *, seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """n scenes (uniform over the 576 attribute tuples): images, captions (random template), tuple ids."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, len(SCENES), n)
    x = np.stack([render_scene(SCENES[i], rng) for i in ids])
    captions = []
    for i in ids:
        shape, colour, quadrant, size, background = SCENES[i]
        template = SCENE_TEMPLATES[rng.integers(len(SCENE_TEMPLATES))]
        captions.append(
            template.format(shape=shape, colour=colour, quadrant=quadrant, size=size, background=background)
        )
    return x, captions, ids


def cifar_captions(y: np.ndarray, classes: list[str], *, seed: int) -> list[str]:
    """One caption per image from a random template among CIFAR_TEMPLATES."""
    rng = np.random.default_rng(seed)
    return [CIFAR_TEMPLATES[rng.integers(len(CIFAR_TEMPLATES))].format(classes[c]) for c in y]
