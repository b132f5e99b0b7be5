"""T2UE: unlearnable noise generated from text descriptions alone (Ma, Huang et al., arXiv 2508.03091).

Zero contact is an API property: `generate_noise` takes captions and a seed, never images; `apply_noise` is the
separate, local step that adds the noise to images.

Example:
    from unlearnable.t2ue import generate_noise, apply_noise
    deltas = generate_noise(["a red bicycle against a brick wall"], generator="gen/", size=(224, 224), seed=0)
"""

from __future__ import annotations

from pathlib import Path

from protect.batch import CopyJob, WriteOptions
from unlearnable.t2ue.apply import DEFAULT_CAP, NoiseSet, add_noise, apply_noise, write_protected
from unlearnable.t2ue.data import CaptionTable, read_captions
from unlearnable.t2ue.pipeline import NoiseGenPipeline, class_captions, generate_noise, parse_size

__all__ = [
    "CaptionTable",
    "NoiseGenPipeline",
    "NoiseSet",
    "add_noise",
    "apply_noise",
    "class_captions",
    "classwise_noise",
    "generate_noise",
    "noise_from_captions_file",
    "read_captions",
    "shortcut",
]


def noise_from_captions_file(
    captions: str | Path,
    *,
    generator: str | Path,
    size: tuple[int, int] | str,
    seed: int = 0,
    device: str = "cpu",
) -> NoiseSet:
    """Sample-wise noise for every row of a captions CSV (`file` column kept for matching at apply time)."""
    table = read_captions(captions)
    pipe = NoiseGenPipeline.from_pretrained(generator, device=device)
    delta = pipe(table.captions, size=parse_size(size), seed=seed)
    return NoiseSet(
        delta=delta,
        captions=table.captions,
        files=table.files,
        meta={"eps": pipe.eps, "seed": seed, "generator": str(generator)},
    )


def classwise_noise(
    class_names: list[str],
    *,
    generator: str | Path,
    size: tuple[int, int] | str,
    seed: int = 0,
    template: str = "a photo of a {}",
    device: str = "cpu",
) -> NoiseSet:
    """The paper's class-wise mode: one templated prompt and one fixed z per class."""
    prompts = class_captions(class_names, template=template)
    pipe = NoiseGenPipeline.from_pretrained(generator, device=device)
    delta = pipe(prompts, size=parse_size(size), seed=seed, z_mode="caption")
    return NoiseSet(
        delta=delta,
        captions=prompts,
        classes=[str(c) for c in class_names],
        meta={"eps": pipe.eps, "seed": seed, "generator": str(generator), "template": template},
    )


def shortcut(
    src: str | Path,
    dst: str | Path,
    *,
    generator: str | Path,
    captions: str | Path,
    seed: int = 0,
    device: str = "cpu",
    eps: float = DEFAULT_CAP,
    options: WriteOptions | None = None,
) -> CopyJob:
    """`protect images SRC --method t2ue`: noise from the captions CSV (never the images), then the local apply step.

    Folder sources are matched by the CSV's `file` column; `.npz` sources by row order. Noise is generated at the
    generator's native size and resized per image. `eps` caps the change per pixel, as in `protect t2ue apply`: a
    generator trained with a larger bound is refused. Returns the job; its `finish()` writes the reports.
    """
    table = read_captions(captions, require_file=not str(src).endswith(".npz"))
    pipe = NoiseGenPipeline.from_pretrained(generator, device=device)
    delta = pipe(table.captions, seed=seed)
    noise = NoiseSet(
        delta=delta, captions=table.captions, files=table.files, meta={"eps": pipe.eps, "seed": seed}
    )
    if str(src).endswith(".npz"):
        noise.files = None
    settings = {"generator": str(generator), "captions": str(captions), "seed": seed}
    return write_protected(noise, src, dst, eps=eps, options=options, settings=settings)
