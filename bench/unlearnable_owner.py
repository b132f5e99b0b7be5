"""One owner protects only their own class (issue 2, user (a)): does a model trained on a scraped dataset that includes
the protected photos still recognise that class?

The owner's images are one CIFAR-10 class (default 3, "cat": 1000 images of the 10k subset). They are protected the way
`protect images ./my_photos` protects a single-class folder: one label, so the library adds its bundled reference
anchors (`unlearnable.reference`) as the other classes; the other nine classes stay clean. Every arm trains the same
victim (ResNet-18, as in `unlearnable_bench.py`) on all 10k images and reports clean-test accuracy on the owner's class
and on the other classes. The control is uniform random noise of the same bound on the owner's images; `+jpeg75`
re-encodes the protected images at JPEG quality 75 (what a photo site may do) before the victim sees them; `:p=0.5`
protects only half of the owner's images (the other half was already public, clean). A model that
never saw the class scores 0% on it; chance is 10%.

    python bench/unlearnable_owner.py          # what we ran: 10k / 2k, ResNet-18 width 16, 20 epochs, bf16
    python bench/unlearnable_owner.py --owner 1 --name unlearnable_owner_automobile   # an easier class

Writes bench/results/NAME.json and NAME.md (NAME = `--name`, default unlearnable_owner).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from common import Results, load_cifar
from unlearnable_bench import METHODS, generate, random_noise

from unlearnable.release import jpeg, mix
from unlearnable.victim import Recipe, train_victim

STRONG = ("em", "adv")  # the two that protect here: does JPEG-75 or a clean half undo it?


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--owner", type=int, default=3, help="the class whose images the owner protects")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--resume", action="store_true", help="keep arms already in the results file")
    ap.add_argument(
        "--name", default="unlearnable_owner", help="results file stem (another owner: another name)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = {k: v for k, v in vars(args).items() if k not in ("resume", "methods", "name")}
    res = Results(args.name, config, resume=args.resume)
    res.data["command"] = " ".join(["python bench/unlearnable_owner.py", *sys.argv[1:]])
    data = load_cifar(args.train_size, args.test_size)
    x, y, xt, yt = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    owner = np.flatnonzero(y == args.owner)
    name = str(data["classes"][args.owner])
    recipe = Recipe(width=args.width, epochs=args.epochs, precision=args.precision)
    res.data["recipe"] = recipe.__dict__
    res.data["owner"] = {"class": args.owner, "name": name, "images": len(owner)}

    def victim(arm: str, released: np.ndarray) -> None:
        """Train on the whole set with the owner's images replaced by `released`."""
        if "owner_acc" in res.data["arms"].get(arm, {}):
            return
        xr = x.copy()
        xr[owner] = released
        r = train_victim(xr, y, xt, yt, recipe=recipe, seed=args.seed)
        others = [a for c, a in r.class_acc.items() if c != args.owner]
        res.put(
            arm,
            res.data["arms"].get(arm, {})
            | {
                "owner_acc": round(r.class_acc[args.owner], 4),
                "others_acc": round(float(np.mean(others)), 4),
                "test_acc": round(r.test_acc, 4),
                "class_acc": {str(c): round(a, 4) for c, a in r.class_acc.items()},
                "seconds": round(r.seconds, 1),
            },
        )
        print(arm, res.data["arms"][arm], flush=True)

    victim("clean", x[owner])
    victim("random", random_noise(x[owner], 8, args.seed))
    for method in filter(None, args.methods.split(",")):
        cache = res.path.parent / f".cache-owner-{method}-{args.owner}-{args.train_size}-{args.seed}.npy"
        if res.has(method) and cache.exists():
            prot = np.load(cache)
        else:
            prot, info = generate(method, x[owner], np.full(len(owner), name), args)
            np.save(cache, prot)
            res.put(method, {"generate": info})
        victim(method, prot)
        if method in STRONG:
            victim(f"{method}+jpeg75", jpeg(prot, 75))  # a photo shared on social media is re-encoded
            victim(f"{method}:p=0.5", mix(x[owner], prot, 0.5, seed=args.seed))  # half already public, clean
    write_table(res)


def write_table(res: Results) -> None:
    arms, owner = res.data["arms"], res.data["owner"]
    rows = []
    for arm, v in arms.items():
        gen = v.get("generate", {})
        rows.append(
            [
                arm,
                f"{100 * v['owner_acc']:.1f}",
                f"{100 * v['others_acc']:.1f}",
                f"{100 * v['test_acc']:.1f}",
                f"{gen['seconds']} s ({gen['images_per_s']} img/s)" if gen else "",
            ]
        )
    notes = (
        f"Command: `{res.data.get('command', 'python bench/unlearnable_owner.py')}` (settings: {res.data['config']}). The owner's class: "
        f"{owner['name']} ({owner['images']} of the training images), protected as one single-class folder "
        "(library defaults; the bundled reference anchors are the other classes); the other classes stay clean. "
        f"Victim recipe: {res.data['recipe']}. Accuracies in % on the clean test split (owner's class: "
        f"{owner['name']} test images; others: mean over the other classes). A model that never saw the class "
        "scores 0%; chance is 10%."
    )
    res.table(
        ["owner's images released as", "owner-class acc", "other classes acc", "all", "protection time"],
        rows,
        "protect images: one owner protects only their own class",
        notes,
    )
    print(res.path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
