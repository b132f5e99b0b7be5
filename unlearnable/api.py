"""`protect images` as a Python call: protect in-memory arrays, a folder of photos, or an `.npz` dataset."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from protect.batch import CopyJob, WriteOptions
from protect.devices import resolve_device, resolve_precision, seeded_generator
from protect.errors import ConfigError, ProtectError, UnknownNameError
from protect.imageio import Picture, load_image
from unlearnable.adv import AdversarialPoison
from unlearnable.bank import PerturbationBank
from unlearnable.beo import BEO
from unlearnable.em import EM
from unlearnable.labels import cluster_labels, given_labels
from unlearnable.perturber import Callback, Perturber
from unlearnable.reference import reference_images
from unlearnable.surrogates import create_surrogate

log = logging.getLogger(__name__)

METHODS = ("beo", "em", "em-class", "adv")
CHUNK_BYTES = 1.5e9  # originals + perturbations held at once; larger folders are protected in chunks


@dataclass
class ProtectConfig:
    """Settings of one protection run (recorded in the report)."""

    method: str = "beo"
    epsilon: float = 8 / 255
    steps: int | None = None
    labels: str = "auto"
    surrogate: str = "scratch"
    resolution: int | None = None
    refit_every: int = 5
    batch_size: int = 512
    clusters: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    @property
    def eps_levels(self) -> int:
        """The bound in whole 8-bit levels; rounding down keeps the saved file inside the requested ball."""
        return int(np.floor(self.epsilon * 255 + 1e-6))


DEFAULT_STEPS = {"beo": 20, "em": 10, "em-class": 10, "adv": 20}


def _perturber(config: ProtectConfig, surrogate, callback: Callback | None) -> Perturber:
    steps = DEFAULT_STEPS.get(config.method, 0) if config.steps is None else config.steps
    # enough level-steps to cross the ball 2.5 times (Madry et al.'s rule of thumb), at least one level
    levels = max(1, math.ceil(2.5 * config.eps_levels / max(steps, 1)))
    common = dict(
        surrogate=surrogate,
        steps=steps,
        step_levels=levels,
        batch_size=config.batch_size,
        seed=config.seed,
        callback=callback,
    )
    if config.method == "beo":
        return BEO(refit_every=config.refit_every, **common)
    if config.method == "adv":
        return AdversarialPoison(**common)
    if config.method in ("em", "em-class"):
        return EM(mode="class" if config.method == "em-class" else "sample", **common)
    raise UnknownNameError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")


def protect_arrays(
    images: Sequence[np.ndarray],
    labels: Sequence[str | int | None] | None = None,
    *,
    config: ProtectConfig | None = None,
    callback: Callback | None = None,
    context: Sequence[np.ndarray] = (),
    context_labels: Sequence[str | int | None] | None = None,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Protect uint8 (H, W, C) images; returns the protected images (same shapes) and run information.

    `context` images (with `context_labels`) take part in the Bayes error and the surrogate's training but are
    never changed: copies protected earlier, so a resumed run optimises its last few images against the whole
    set instead of alone (two images of two classes have no Bayes error to raise).

    Example:
        >>> protected, info = protect_arrays(x, y, config=ProtectConfig(method="beo", steps=10))
    """
    config = config or ProtectConfig()
    if not len(images):
        raise ConfigError("no images to protect")
    if config.eps_levels < 1:
        raise ConfigError(
            f"--epsilon {config.epsilon:.5f} is below one 8-bit level (1/255): nothing could change"
        )
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    seeded_generator(config.seed)
    n = len(images)
    if context_labels is None and labels is not None and len(context):
        raise ConfigError("context images need context_labels when the images have labels")
    given = [*(labels if labels is not None else [None] * n)]
    given += [*(context_labels if context_labels is not None else [None] * len(context))]
    if len(given) != n + len(context):
        raise ConfigError(f"{len(given)} labels for {n} images and {len(context)} context images")
    images = list(images) + list(context)
    names = given_labels(config.labels, [None if lb is None else str(lb) for lb in given])
    largest = max(max(img.shape[:2]) for img in images)
    size = config.resolution or (32 if largest <= 32 else 64)
    provisional = 1 if names is None else len(set(names))
    surrogate = create_surrogate(
        config.surrogate, num_classes=max(provisional, 2), device=device, size=size, precision=precision
    )
    if names is None:
        probe = PerturbationBank(list(images), size=surrogate.input_size, eps_levels=0, device=device)
        with torch.no_grad():
            feats = torch.cat(
                [surrogate.features(probe.views(ids)[0]) for ids in torch.arange(probe.n).split(256)]
            )
        names = cluster_labels(feats, k=config.clusters, seed=config.seed)
    all_images, all_names = list(images), list(names)
    frozen = np.arange(len(images)) >= n  # the context is fixed
    if len(set(names)) < 2:
        ref, ref_names = reference_images(size=surrogate.input_size, seed=config.seed)
        all_images += ref
        all_names += ref_names
        frozen = np.concatenate([frozen, np.ones(len(ref), bool)])
    classes = sorted(set(all_names))
    y = torch.tensor([classes.index(n) for n in all_names])
    if surrogate.trainable and len(classes) != surrogate.net.fc.out_features:
        surrogate = create_surrogate(
            config.surrogate, num_classes=len(classes), device=device, size=size, precision=precision
        )
    bank = PerturbationBank(
        all_images, size=surrogate.input_size, eps_levels=config.eps_levels, frozen=frozen, device=device
    )
    perturber = _perturber(config, surrogate, callback)
    history = perturber.perturb(bank, y)
    protected = [bank.protected(i) for i in range(n)]
    info = {
        "classes": classes,
        "context_images": len(context),
        "reference_anchors": int(frozen.sum()) - len(context),
        "surrogate_input": surrogate.input_size,
        "history": history,
    }
    return protected, info


def _context(job: CopyJob, budget: float) -> list[Picture]:
    """Copies an interrupted run already saved (`--resume`), read back from DST (which mirrors SRC's folders,
    so their labels too), as many as `budget` bytes of the optimisation hold. Rows are taken round-robin over
    their folders (the classes of `--labels folders`) and decoded one at a time, so a resume near the end of a
    large folder reads only what it uses. An unreadable copy is left out: the rest only loses some context."""
    by_folder: dict[str, list[dict[str, Any]]] = {}
    for row in job.rows:
        by_folder.setdefault(str(PurePosixPath(str(row.get("file", ""))).parent), []).append(row)
    queues = list(by_folder.values())
    order = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    chosen, used = [], 0.0
    for row in order:
        try:
            pic = load_image(Path(row["output"]), root=job.dst)
        except (ProtectError, KeyError):
            continue
        cost = 2.0 * pic.pixels.size
        if used + cost > budget:
            break
        chosen.append(pic)
        used += cost
    return chosen


def _chunks(pictures: list[Picture]) -> list[list[Picture]]:
    """Memory-bounded chunks of a folder, each class spread evenly over them (in proportion to its size), so that
    every chunk holds every class: a chunk of one class would be protected against the reference images instead of
    against the other classes."""
    by_class: dict[str | None, list[Picture]] = {}
    for pic in pictures:
        by_class.setdefault(pic.label, []).append(pic)
    spread = [
        ((i + 0.5) / len(group), k, pic)
        for k, group in enumerate(by_class.values())
        for i, pic in enumerate(group)
    ]
    pictures = [pic for *_, pic in sorted(spread, key=lambda t: t[:2])]
    chunks: list[list[Picture]] = [[]]
    used = 0.0
    if not pictures:
        return []
    for pic in pictures:
        cost = 2.0 * pic.pixels.size
        if chunks[-1] and used + cost > CHUNK_BYTES:
            chunks.append([])
            used = 0.0
        chunks[-1].append(pic)
        used += cost
    return chunks


def protect_images(
    src: str | Path,
    dst: str | Path,
    *,
    config: ProtectConfig | None = None,
    options: WriteOptions | None = None,
    callback: Callback | None = None,
) -> CopyJob:
    """Write protected copies of a folder (mirrored paths) or an `.npz` (same arrays); originals are never touched.

    Returns the finished job (its `rows`, `skipped` and `finish()` status). If the run fails part-way, the reports
    are written for the copies already saved before the error propagates.
    """
    config, options = config or ProtectConfig(), options or WriteOptions()
    if config.method not in METHODS:
        raise UnknownNameError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")
    resolve_device(config.device)  # a missing accelerator is refused before anything is written
    job = CopyJob(Path(src), Path(dst), settings=asdict(config) | {"format": options.fmt}, options=options)
    with job.released_on_error(reports=True):
        return _protect_job(job, config, callback)


def _protect_job(job: CopyJob, config: ProtectConfig, callback: Callback | None) -> CopyJob:
    if job.is_npz:
        data = job.load_dataset()
        labels = None if data.labels is None else [str(v) for v in data.labels]
        protected, info = protect_arrays(list(data.x), labels, config=config, callback=callback)
        job.settings["run"] = {k: v for k, v in info.items() if k != "classes"}
        job.write_dataset(data, np.stack(protected))
        return job
    pictures = [p for p in (job.load(path) for path in job.pending()) if p is not None]
    for chunk in _chunks(pictures):
        room = CHUNK_BYTES - sum(2.0 * p.pixels.size for p in chunk)
        context = _context(job, room) if job.rows else []
        protected, info = protect_arrays(
            [p.pixels for p in chunk],
            [p.label for p in chunk],
            config=config,
            callback=callback,
            context=[p.pixels for p in context],
            context_labels=[p.label for p in context],
        )
        job.record_run(
            {k: v for k, v in info.items() if k != "history"}
            | {"final": info["history"][-1] if info["history"] else None}
        )
        for pic, out in zip(chunk, protected, strict=True):
            job.write(pic, out)
    return job
