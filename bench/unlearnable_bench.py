"""Benchmark for `protect images` (issue 2): BEO vs EM vs random noise on the CIFAR-10 subset, mixed with clean data.

Every arm trains the same victim recipe (ResNet-18, SGD, cosine, crop+flip) and reports clean-test accuracy.
Mixed arms (protected copies replace clean ones at fraction p) are always shown beside the clean-only (1 - p) baseline.
Also: JPEG-75 and greyscale of the released images, generation speed (images/s) and one 12-megapixel photo
(the surrogate refit interval K is measured by `unlearnable_refit.py`).

    python bench/unlearnable_bench.py                      # the issue's full settings (hours on a 2-core CPU)
    python bench/unlearnable_bench.py --train-size 2000 --test-size 1000 --width 16 --epochs 15   # what we ran

Writes bench/results/unlearnable.json and bench/results/unlearnable.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import Results, load_cifar

from unlearnable.api import ProtectConfig, protect_arrays
from unlearnable.release import clean_only, grayscale, jpeg, mix
from unlearnable.victim import Recipe, train_victim


def generate(
    method: str, x: np.ndarray, y: np.ndarray, args, *, steps: int, refit_every: int = 1
) -> tuple[np.ndarray, dict]:
    cfg = ProtectConfig(method=method, steps=steps, device="cpu", seed=args.seed, refit_every=refit_every)
    start = time.perf_counter()
    out, info = protect_arrays(list(x), list(y), config=cfg)
    secs = time.perf_counter() - start
    prot = np.stack(out)
    return prot, {
        "seconds": round(secs, 1),
        "images_per_s": round(len(x) / secs, 2),
        "linf": int(np.abs(prot.astype(int) - x).max()),
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
    start = time.perf_counter()
    out, _ = protect_arrays([img], None, config=ProtectConfig(device="cpu", seed=args.seed))
    secs = time.perf_counter() - start
    return {
        "megapixels": 12.0,
        "seconds": round(secs, 1),
        "linf": int(np.abs(out[0].astype(int) - img).max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--width", type=int, default=64, help="victim ResNet-18 width (64 = standard)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--beo-steps", type=int, default=20)
    ap.add_argument("--em-steps", type=int, default=10)
    ap.add_argument("--refit-every", type=int, default=1)
    ap.add_argument("--ps", default="0.2,0.5,0.8,1.0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: em,photo,squeeze")
    ap.add_argument("--resume", action="store_true", help="keep arms already in the results file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    ps = [float(p) for p in args.ps.split(",")]
    config = {k: v for k, v in vars(args).items() if k not in ("resume",)}
    res = Results("unlearnable", config, resume=args.resume)
    data = load_cifar(args.train_size, args.test_size)
    x, y, xt, yt = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    recipe = Recipe(width=args.width, epochs=args.epochs)
    res.data["recipe"] = recipe.__dict__

    def victim(arm: str, xtrain: np.ndarray, ytrain: np.ndarray) -> None:
        if res.has(arm):
            return
        r = train_victim(xtrain, ytrain, xt, yt, recipe=recipe, seed=args.seed)
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
        cache = res.path.parent / f".cache-{method}-{args.train_size}-{args.seed}.npy"
        if cache.exists() and res.has(f"generate:{method}"):
            return np.load(cache)
        steps = args.beo_steps if method == "beo" else args.em_steps
        prot, info = generate(method, x, y, args, steps=steps, refit_every=args.refit_every)
        np.save(cache, prot)
        res.put(f"generate:{method}", info)
        print(method, info, flush=True)
        return prot

    victim("clean", x, y)
    beo = protected("beo")
    victim("random:p=1.0", random_noise(x, 8, args.seed), y)
    for p in ps:
        if p < 1:
            victim(f"clean-only:p={p}", *clean_only(x, y, p, seed=args.seed))
        victim(f"beo:p={p}", mix(x, beo, p, seed=args.seed), y)
    if "squeeze" not in skip:
        victim("beo:p=1.0+jpeg75", jpeg(beo, 75), y)
        victim("beo:p=1.0+grayscale", grayscale(beo), y)
        victim("clean+grayscale", grayscale(x), y)
    if "em" not in skip:
        em = protected("em")
        victim("em:p=1.0", em, y)
        victim("em:p=0.5", mix(x, em, 0.5, seed=args.seed), y)
        if "squeeze" not in skip:
            victim("em:p=1.0+jpeg75", jpeg(em, 75), y)
    if "photo" not in skip and not res.has("photo:12MP"):
        res.put("photo:12MP", photo_12mp(args))
    write_table(res, ps)


def write_table(res: Results, ps: list[float]) -> None:
    arms = res.data["arms"]

    def acc(name: str) -> str:
        return f"{100 * arms[name]['test_acc']:.2f}" if name in arms else "n/a"

    rows = [["clean (p=0)", acc("clean"), "", ""], ["random noise +-8/255, p=1", acc("random:p=1.0"), "", ""]]
    for p in ps:
        base = acc("clean") if p >= 1 else acc(f"clean-only:p={p}")
        rows.append([f"p={p}", base, acc(f"beo:p={p}"), acc(f"em:p={p}")])
    rows += [
        ["p=1.0, JPEG-75", "", acc("beo:p=1.0+jpeg75"), acc("em:p=1.0+jpeg75")],
        [
            "p=1.0, greyscale (clean greyscale: " + acc("clean+grayscale") + ")",
            "",
            acc("beo:p=1.0+grayscale"),
            "",
        ],
    ]
    gen = {m: arms.get(f"generate:{m}", {}) for m in ("beo", "em")}
    notes = (
        f"Victim recipe: {res.data.get('recipe')}; config: {res.data['config']}.\n"
        "Columns: clean-only = training on the clean (1-p) part alone (for p=1: clean accuracy of the same "
        "recipe); BEO / EM = protected copies replace a fraction p of the clean ones.\n"
        f"Generation: BEO {gen['beo'].get('images_per_s')} img/s ({gen['beo'].get('seconds')} s), "
        f"EM {gen['em'].get('images_per_s')} img/s ({gen['em'].get('seconds')} s). "
        f"12-MP photo: {arms.get('photo:12MP')}."
    )
    print(
        res.table(
            ["setting", "clean-only / clean acc %", "BEO acc %", "EM acc %"],
            rows,
            "protect images: victim clean-test accuracy (lower = better protection)",
            notes,
        )
    )


if __name__ == "__main__":
    main()
