"""Benchmark for `protect images` (issue 2): BEO vs EM vs targeted adversarial poison vs random noise on the CIFAR-10
subset, alone and mixed with clean data.

Every arm trains the same victim recipe (ResNet-18, SGD, cosine, crop+flip) and reports clean-test accuracy. Mixed arms
(protected copies replace clean ones at fraction p) are always shown beside the clean-only (1 - p) baseline. Also:
JPEG-75 and greyscale of the released images, the authors' second mixing protocol at p = 0.5 (train on the clean half,
then fine-tune the last 5 epochs on the protected half, `cifar10-ft.py`), generation speed (images/s, wall and CPU
seconds) and one 12-megapixel photo. The surrogate refit interval K is measured by `unlearnable_refit.py`.

    python bench/unlearnable_bench.py                      # what we ran: 10k / 2k, ResNet-18 width 16, 20 epochs, bf16
    python bench/unlearnable_bench.py --width 64 --epochs 30 --precision fp32   # the standard recipe (a day here)
    python bench/unlearnable_bench.py --seed 1 --name unlearnable_seed1 --ps 0.5,1.0 --skip em,adv,squeeze,photo
    python bench/unlearnable_bench.py --no-augment --name unlearnable_noaug --ps 0.5,1.0 --skip squeeze,photo
                                                           # the authors' victims: no crop or flip

Writes bench/results/unlearnable.json and bench/results/unlearnable.md.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from common import Results, load_cifar

from unlearnable.api import ProtectConfig, protect_arrays
from unlearnable.release import clean_only, grayscale, jpeg, mix, protected_part
from unlearnable.victim import Recipe, train_victim

METHODS = ("beo", "em", "adv")


def timed(fn, *args, **kwargs) -> tuple[object, float, float]:
    """Call fn; return its result, wall seconds and this process's CPU seconds (all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def generate(method: str, x: np.ndarray, y: np.ndarray, args, **overrides) -> tuple[np.ndarray, dict]:
    """Protect the training set with `method` at the library's defaults (plus `overrides`)."""
    cfg = ProtectConfig(method=method, device="cpu", seed=args.seed, **overrides)
    (out, info), wall, cpu = timed(protect_arrays, list(x), list(y), config=cfg)
    prot = np.stack(out)
    return prot, {
        "seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "images_per_s": round(len(x) / wall, 2),
        "linf": int(np.abs(prot.astype(int) - x).max()),
        "settings": {k: v for k, v in cfg.__dict__.items() if k != "device"},
        "history": info["history"][-1:],
    }


def random_noise(x: np.ndarray, eps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(x.astype(int) + rng.integers(-eps, eps + 1, x.shape), 0, 255).astype(np.uint8)


def photo_12mp(args) -> dict:
    """One 4000 x 3000 photo (scikit-image's astronaut, upscaled), default settings: single class + anchors."""
    import skimage.data
    from PIL import Image

    img = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((4000, 3000), Image.Resampling.BICUBIC))
    (out, _), wall, cpu = timed(
        protect_arrays, [img], None, config=ProtectConfig(device="cpu", seed=args.seed)
    )
    return {
        "megapixels": 12.0,
        "seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "threads": torch.get_num_threads(),
        "linf": int(np.abs(out[0].astype(int) - img).max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--width", type=int, default=16, help="victim ResNet-18 width (64 = standard)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--precision", default="bf16", help="victim arithmetic: bf16 autocast or fp32")
    ap.add_argument(
        "--no-augment",
        action="store_true",
        help="victims without crop+flip (the authors' ToTensor-only recipe)",
    )
    ap.add_argument("--ps", default="0.2,0.5,0.8,1.0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: em,adv,photo,squeeze,finetune")
    ap.add_argument("--resume", action="store_true", help="keep arms already in the results file")
    ap.add_argument("--name", default="unlearnable", help="results file stem (another seed: another name)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    ps = [float(p) for p in args.ps.split(",")]
    # what the numbers depend on
    config = {k: v for k, v in vars(args).items() if k not in ("resume", "skip", "name")}
    res = Results(args.name, config, resume=args.resume)
    data = load_cifar(args.train_size, args.test_size)
    x, y, xt, yt = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    recipe = Recipe(
        width=args.width, epochs=args.epochs, precision=args.precision, augment=not args.no_augment
    )
    res.data["recipe"] = recipe.__dict__

    def victim(arm: str, xtrain: np.ndarray, ytrain: np.ndarray, finetune=None) -> None:
        if res.has(arm):
            return
        r = train_victim(xtrain, ytrain, xt, yt, recipe=recipe, seed=args.seed, finetune=finetune)
        res.put(
            arm,
            {
                "test_acc": round(r.test_acc, 4),
                "train_acc": round(r.train_acc, 4),
                "n_train": len(xtrain),
                "seconds": round(r.seconds, 1),
            },
        )
        print(arm, res.data["arms"][arm], flush=True)

    def protected(method: str) -> np.ndarray:
        """The protected training set, generated once per (method, size, seed) and shared by every results
        file: the victim recipe does not change it. The generation's own numbers travel with the array."""
        cache = res.path.parent / f".cache-{method}-{args.train_size}-{args.seed}.npy"
        info_file = cache.with_suffix(".json")
        if cache.exists() and info_file.exists():
            if not res.has(f"generate:{method}"):
                res.put(f"generate:{method}", json.loads(info_file.read_text()))
            return np.load(cache)
        prot, info = generate(method, x, y, args)
        np.save(cache, prot)
        info_file.write_text(json.dumps(info))
        res.put(f"generate:{method}", info)
        print(method, info, flush=True)
        return prot

    victim("clean", x, y)
    noisy = random_noise(x, 8, args.seed)
    victim("random:p=1.0", noisy, y)
    if "squeeze" not in skip:
        victim("clean+jpeg75", jpeg(x, 75), y)
        victim("clean+grayscale", grayscale(x), y)
    for p in ps:
        if p < 1:
            victim(f"clean-only:p={p}", *clean_only(x, y, p, seed=args.seed))
    for method in METHODS:
        if method in skip:
            continue
        prot = protected(method)
        for p in ps if method == "beo" else [q for q in ps if q in (0.5, 1.0)]:
            victim(f"{method}:p={p}", mix(x, prot, p, seed=args.seed), y)
        if "squeeze" not in skip:
            victim(f"{method}:p=1.0+jpeg75", jpeg(prot, 75), y)
            victim(f"{method}:p=1.0+grayscale", grayscale(prot), y)
    if "finetune" not in skip:  # the p = 0.5 half as clean copies and as random noise are the controls
        half = clean_only(x, y, 0.5, seed=args.seed)
        released = {"clean": x, "random": noisy}
        released |= {m: protected(m) for m in METHODS if m not in skip}
        for name, xr in released.items():
            victim(f"finetune:{name}:p=0.5", *half, finetune=protected_part(xr, y, 0.5, seed=args.seed))
    if "photo" not in skip and not res.has("photo:12MP"):
        res.put("photo:12MP", photo_12mp(args))
    write_table(res, ps)


def write_table(res: Results, ps: list[float]) -> None:
    arms = res.data["arms"]

    def acc(name: str) -> str:
        return f"{100 * arms[name]['test_acc']:.2f}" if name in arms else ""

    rows = [
        ["clean (p=0)", acc("clean"), "", "", ""],
        ["uniform random noise +-8/255, p=1", acc("random:p=1.0"), "", "", ""],
    ]
    for p in ps:
        base = acc("clean") if p >= 1 else acc(f"clean-only:p={p}")
        rows.append([f"p={p}", base, *(acc(f"{m}:p={p}") for m in METHODS)])
    ft = "p=0.5, clean half then 5 epochs on the other half (paper's fine-tune protocol)"
    rows.append([ft, acc("clean-only:p=0.5"), *(acc(f"finetune:{m}:p=0.5") for m in METHODS)])
    rows.append(
        [
            "  the same, other half clean / random noise (controls)",
            f"{acc('finetune:clean:p=0.5')} / {acc('finetune:random:p=0.5')}",
            "",
            "",
            "",
        ]
    )
    for squeeze, label in (("jpeg75", "JPEG-75"), ("grayscale", "greyscale")):
        rows.append(
            [f"p=1.0, then {label}", acc(f"clean+{squeeze}"), *(acc(f"{m}:p=1.0+{squeeze}") for m in METHODS)]
        )
    gen = "; ".join(
        f"{m} {g['images_per_s']} img/s ({g['seconds']} s wall, {g['cpu_seconds']} s CPU)"
        for m in METHODS
        if (g := arms.get(f"generate:{m}"))
    )
    notes = (
        f"Victim recipe: {res.data.get('recipe')}; config: {res.data['config']}; load average at start "
        f"{res.data['machine']['load_average']}.\n"
        "Columns: baseline = the clean (1-p) part alone for p < 1, the clean set for p = 1, the clean set squeezed the "
        "same way for JPEG / greyscale; BEO / EM / adv = protected copies replace a fraction p of the clean ones.\n"
        f"Generation ({res.data['config']['train_size']} images): {gen}. 12-MP photo: {arms.get('photo:12MP')}."
    )
    print(
        res.table(
            ["setting", "baseline acc %", "BEO acc %", "EM acc %", "adv acc %"],
            rows,
            "protect images: victim clean-test accuracy (lower = better protection)",
            notes,
        )
    )


if __name__ == "__main__":
    main()
