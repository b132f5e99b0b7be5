"""The surrogate refit interval K for BEO (issue 2): generation time vs protection, measured in one run.

The paper retrains its surrogate at every step; we train it on the clean images first, then warm-start and refit it
on the perturbed images every K passes (K = 20 = the number of passes: never refit). For each K this script protects
the same training set, trains the same victim on it (p = 1 and p = 0.5) and reports generation time and clean-test
accuracy, with K = 1 as the reference, beside the unprotected baselines. It runs on 2000 images by default (the whole
script on 10k takes about an hour here).

    python bench/unlearnable_refit.py

Writes bench/results/unlearnable_refit.json and .md.
"""

from __future__ import annotations

import argparse

import torch
from common import Results, load_cifar
from unlearnable_bench import generate

from unlearnable.release import clean_only, mix
from unlearnable.victim import Recipe, train_victim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-size", type=int, default=2000, help="10k: about an hour here")
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--ks", default="1,5,20")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = Results("unlearnable_refit", vars(args))
    data = load_cifar(args.train_size, args.test_size)
    x, y = data["x_train"], data["y_train"]
    recipe = Recipe(width=args.width, epochs=args.epochs, precision=args.precision)

    def acc(xtrain, ytrain) -> float:
        return round(
            train_victim(
                xtrain, ytrain, data["x_test"], data["y_test"], recipe=recipe, seed=args.seed
            ).test_acc,
            4,
        )

    res.put("baseline", {"test_acc": acc(x, y), "test_acc_p0.5": acc(*clean_only(x, y, 0.5, seed=args.seed))})
    for k in (int(v) for v in args.ks.split(",")):
        prot, info = generate("beo", x, y, args, refit_every=k)
        accs = {"test_acc": acc(prot, y), "test_acc_p0.5": acc(mix(x, prot, 0.5, seed=args.seed), y)}
        res.put(f"K={k}", info | accs)
        print(k, res.data["arms"][f"K={k}"], flush=True)
    arms = res.data["arms"]
    base = arms.get("K=1", {}).get("seconds")

    def pct(v: dict, key: str) -> str:
        return f"{100 * v[key]:.2f}"

    b = arms["baseline"]
    rows = [
        [
            "no protection (clean; the clean half alone)",
            "",
            "",
            "",
            pct(b, "test_acc"),
            pct(b, "test_acc_p0.5"),
        ]
    ]
    rows += [
        [k, v["seconds"], v["cpu_seconds"], round(base / v["seconds"], 2) if base else "n/a"]
        + [pct(v, "test_acc"), pct(v, "test_acc_p0.5")]
        for k, v in arms.items()
        if k != "baseline"
    ]
    print(
        res.table(
            [
                "refit interval",
                "generation s",
                "CPU s",
                "speed-up vs K=1",
                "victim acc % (p=1)",
                "p=0.5 (baseline: clean half alone)",
            ],
            rows,
            "BEO surrogate refit interval",
            f"config: {vars(args)}",
        )
    )


if __name__ == "__main__":
    main()
