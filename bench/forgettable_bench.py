"""Benchmark: does deleting a class's prompt forget it as well as retraining without it? (arXiv 2509.15230)

For scikit-learn's digits (8x8) and the shared CIFAR-10 subset (32x32), in two regimes:
- `frozen`: a tiny ViT is first trained (plain CE) on classes 5-9 (all their images: no audit uses them), frozen,
  then LoRA q/v + prompts + head are learned on classes 0-4 (the paper's condition: the backbone was pretrained
  on other classes and never saw the forgotten one); `--frozen-tuning prompts` learns prompts + head only;
- `joint`: everything is trained together from scratch on classes 0-4 (shared weights see every class).
Recipe (not the paper's 10 epochs at constant lr, which leaves these from-scratch ViTs under-trained): patch 4,
Adam with 5% warm-up + cosine decay; digits 150 epochs at batch 16 with random 1-pixel shifts; CIFAR 40 epochs
at batch 32 with random 2-pixel shifts and horizontal flips. Oracles and pretrained backbones use the same recipe.
In each, a pre-forgettable model (PF) is trained, class 3 is forgotten by deleting its prompt, and the result is
audited against the retrained oracle (same recipe, class 3 never seen): retain accuracy before/after, forget
accuracy (unmasked), balanced MIA with two positive controls, linear probe, re-learning with 1/5/20 samples,
checkpoint hygiene, and forgetting latency vs the oracle's training time. Head: `shared` (paper) and
`prompt_tied` (our fix: deleting the prompt deletes the head row).

    python bench/forgettable_bench.py     # writes bench/results/forgettable.json and forgettable.md
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import markdown_table  # noqa: E402

from forgettable.audit import audit_forgetting, checkpoint_hygiene  # noqa: E402
from forgettable.backbones import resolve_architecture  # noqa: E402
from forgettable.config import ForgettableConfig  # noqa: E402
from forgettable.data import LabeledImages, load_labeled  # noqa: E402
from forgettable.forget import forget_checkpoint  # noqa: E402
from forgettable.model import PreForgettableModel  # noqa: E402
from forgettable.train import Recipe, fit, train_model, train_oracle  # noqa: E402
from protect.paths import atomic_write_text  # noqa: E402

log = logging.getLogger("bench")
SHARED = ROOT.parent / "shared" / "data"
FORGET = 3  # class index forgotten in every setting (digit 3 / CIFAR "cat")


def digits() -> tuple[LabeledImages, LabeledImages]:
    """scikit-learn digits: per class, half for training (members), half held out."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16 * 255).round().astype(np.uint8)[..., None]
    data = LabeledImages(x, d.target.astype(np.int64), [str(i) for i in range(10)])
    rng = np.random.default_rng(0)
    train_idx, hold_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(data.y == c))
        train_idx += list(idx[: len(idx) // 2])
        hold_idx += list(idx[len(idx) // 2 :])
    return data.take(np.array(train_idx)), data.take(np.array(hold_idx))


def cifar(per_class: int) -> tuple[LabeledImages, LabeledImages]:
    """The shared CIFAR-10 subset: `per_class` training images per class; the test split held out."""
    train = load_labeled(SHARED / "cifar10_train_10k.npz")
    test = load_labeled(SHARED / "cifar10_test_2k.npz")
    idx = np.concatenate([np.flatnonzero(train.y == c)[:per_class] for c in range(10)])
    return train.take(idx), test


def cifar_rest(per_class: int) -> LabeledImages:
    """The training images `cifar(per_class)` leaves out (used only to pretrain on other classes)."""
    train = load_labeled(SHARED / "cifar10_train_10k.npz")
    idx = np.concatenate([np.flatnonzero(train.y == c)[per_class:] for c in range(10)])
    return train.take(idx)


def classes(data: LabeledImages, ids: range) -> LabeledImages:
    """Only classes `ids`, relabelled 0..k-1."""
    return data.without([n for i, n in enumerate(data.class_names) if i not in ids])


def joined(a: LabeledImages, b: LabeledImages) -> LabeledImages:
    """Two sets with the same classes as one."""
    return LabeledImages(np.concatenate([a.x, b.x]), np.concatenate([a.y, b.y]), list(a.class_names))


def recipe_for(dataset: str, args: argparse.Namespace) -> Recipe:
    """The training recipe of every model (PF, oracle, pretrained backbone) on `dataset`."""
    shared = dict(lr=2e-3, kl_weight=args.kl_weight, schedule="cosine", seed=args.seed)
    if dataset == "digits":
        return Recipe(epochs=args.digits_epochs, batch_size=16, shift=1, **shared)
    return Recipe(epochs=args.cifar_epochs, batch_size=32, shift=2, hflip=True, **shared)


def pretrain_backbone(data: LabeledImages, *, arch: dict, recipe: Recipe) -> tuple[dict, float]:
    """Plain-CE training of the tiny ViT on other classes; returns its backbone weights (then frozen)."""
    torch.manual_seed(recipe.seed)
    cfg = ForgettableConfig(list(data.class_names), tuning="full", **arch)
    model = PreForgettableModel(cfg)
    start = time.perf_counter()
    train_model(model, data, recipe=recipe, prompts=False)
    return model.backbone.state_dict(), time.perf_counter() - start


def forget_latency(model: PreForgettableModel, name: str, repeats: int = 7) -> tuple[list[float], Path, Path]:
    """Wall times of the real deletion path (read + SHA-256 check, delete, atomic fsynced save) and a result."""
    tmp = Path(tempfile.mkdtemp(prefix="forgettable-bench-"))
    model.save_pretrained(tmp / "pf")
    times = []
    for i in range(repeats):
        result = forget_checkpoint(tmp / "pf", [name], out=tmp / f"forgot{i}")
        times.append(result.seconds)
    return times, tmp / "forgot0", tmp


def run_setting(
    dataset: str,
    regime: str,
    head: str,
    *,
    train: LabeledImages,
    holdout: LabeledImages,
    arch: dict,
    recipe: Recipe,
    backbone_state: dict | None,
    relearn_steps: int,
    frozen_tuning: str = "lora",
) -> dict:
    name = train.class_names[FORGET]
    seed = recipe.seed
    recipe = replace(recipe, holdout_fraction=0.0)
    tuning = frozen_tuning if backbone_state is not None else "full"
    start = time.perf_counter()
    pf = fit(
        train,
        backbone=arch["backbone"],
        tuning=tuning,
        head=head,
        recipe=recipe,
        backbone_state=backbone_state,
        arch=arch,
    )
    pf_seconds = time.perf_counter() - start
    start = time.perf_counter()
    oracle = train_oracle(pf, train, [name], backbone_state=backbone_state)
    oracle_seconds = time.perf_counter() - start
    times, forgotten_dir, tmp = forget_latency(pf, name)
    latency = statistics.median(times)
    after = PreForgettableModel.from_pretrained(forgotten_dir)
    hygiene = checkpoint_hygiene(forgotten_dir, FORGET, pf.prompts[str(FORGET)].detach())
    report = audit_forgetting(
        after,
        oracle,
        train=train,
        holdout=holdout,
        forgotten=name,
        before=pf,
        hygiene=hygiene,
        seed=seed,
        relearn_steps=relearn_steps,
    )
    shutil.rmtree(tmp)
    out = report.to_dict()
    out.update(
        dataset=dataset,
        regime=regime,
        head=head,
        tuning=tuning,
        recipe=asdict(recipe),
        pf_train_seconds=pf_seconds,
        oracle_train_seconds=oracle_seconds,
        forget_seconds=latency,
        forget_seconds_all=times,
        speedup_vs_retrain=oracle_seconds / latency,
        n_train=len(train),
        n_holdout=len(holdout),
    )
    out["checks"]["speedup_ge_1000x"] = oracle_seconds / latency >= 1000
    log.info("%s/%s/%s done: %s", dataset, regime, head, out["checks"])
    return out


def pct(v: float | None) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}"


def auc(m: dict, stat: str) -> str:
    r = m.get(stat)
    return "-" if r is None else f"{r['auc']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def _key(r: dict) -> list[str]:
    regime = r["regime"] if r.get("tuning", "lora") in ("lora", "full") else f"{r['regime']} ({r['tuning']})"
    return [r["dataset"], regime, r["head"]]


def markdown(rows: list[dict], command: str, seconds: float) -> str:
    """The results as three tables: accuracy and latency, attacks, checks."""
    accuracy_rows, attack_rows = [], []
    for r in rows:
        m, o, b = r["model"], r["oracle"], r["before"]
        accuracy_rows.append(
            _key(r)
            + [
                pct(b["retain_acc"]),
                pct(b["retain_acc_restricted"]),
                pct(m["retain_acc"]),
                pct(o["retain_acc"]),
                pct(b["forget_acc"]),
                f"{pct(m['forget_acc'])} ({pct(o['forget_acc'])})",
                f"{1000 * r['forget_seconds']:.1f}",
                f"{r['oracle_train_seconds']:.1f}",
                f"{r['speedup_vs_retrain']:.0f}x",
            ]
        )
        attack_rows.append(
            _key(r)
            + [
                auc(m["mia"], "confidence"),
                auc(o["mia"], "confidence"),
                auc(m["mia"], "loss"),
                auc(m["mia"], "calibrated"),
                auc(r["mia_before"], "calibrated"),
                auc(r["mia_before"], "confidence") + " / " + auc(r["mia_before"], "loss"),
                auc(m["mia_control"], "confidence") + " / " + auc(m["mia_control"], "loss"),
                auc(m["mia_control_pooled"], "confidence") + " / " + auc(m["mia_control_pooled"], "loss"),
                f"{m['probe_auc']:.3f} ({o['probe_auc']:.3f} [{o['probe_ci'][0]:.2f}, {o['probe_ci'][1]:.2f}])",
                "/".join(pct(p["forget_acc"]) for p in m["relearn"]),
                "/".join(pct(p["forget_acc"]) for p in o["relearn"]),
            ]
        )
    checks = list(rows[0]["checks"])
    check_rows = [
        _key(r) + ["-" if v is None else ("pass" if v else "FAIL") for v in r["checks"].values()]
        for r in rows
    ]
    lines = [
        "# Pre-forgettable models: forgetting by deleting a prompt vs the retrained oracle",
        "",
        f"Command: `{command}` ({seconds / 60:.1f} min wall time on the shared 2-core CPU, one torch thread). "
        "Class 3 forgotten (digit 3 / CIFAR cat) out of classes 0-4; PF = pre-forgettable model; before = PF "
        "with the prompt, after = PF with the prompt deleted; oracle = same recipe, class never seen. "
        "Accuracies in % on held-out data. Retain before: all 5 outputs (as-is) and argmax restricted to the 4 "
        "retained classes (restricted); retain after and forget accuracy are unmasked (chance = 20%). "
        "Forget ms: median of 7 runs of `forget_checkpoint` (read + SHA-256 check, delete, fsynced atomic "
        "folder swap); retrain oracle s: the oracle's training time in the same run.",
        "",
        *markdown_table(
            [
                "dataset",
                "regime",
                "head",
                "retain before (as-is)",
                "retain before (restricted)",
                "retain after",
                "retain oracle",
                "forget before",
                "forget after (oracle)",
                "forget ms",
                "retrain oracle s",
                "speed-up",
            ],
            accuracy_rows,
        ),
        "",
        "Attacks. MIA: balanced AUC [bootstrap 95% CI], training members vs held-out samples of the class; "
        "`conf` = the top class's log-odds (label-free, defined for the oracle too), `loss` = the true class's "
        "log-odds; both computed from the logits and averaged over the training augmentations; an AUC below 0.5 "
        "is a signal too (members score lower); `calibrated` = conf minus the oracle's conf on the same image "
        "(difficulty calibration, Watson et al. 2022: the oracle never saw the class, so the null is exactly "
        "0.5). Positive "
        "controls: the same attacks on the forgotten class *before* forgetting, on a retained class (class 0) "
        "after, and on all retained classes pooled after (4x the samples). Re-learning: forget accuracy (%) "
        "after a new prompt (and head row) is optimised on 1/5/20 samples per class, mean of 3 draws.",
        "",
        *markdown_table(
            [
                "dataset",
                "regime",
                "head",
                "MIA conf after",
                "MIA conf oracle",
                "MIA loss after",
                "MIA calibrated after (null 0.5)",
                "control: before, calibrated",
                "control: before, conf / loss",
                "control: class 0, conf / loss",
                "control: classes 0-2,4 pooled, conf / loss",
                "probe AUC after (oracle [CI])",
                "re-learn 1/5/20 after",
                "re-learn oracle",
            ],
            attack_rows,
        ),
        "",
        "Checks (pass / FAIL / - not applicable):",
        "",
        *markdown_table(["dataset", "regime", "head", *checks], check_rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,cifar")
    parser.add_argument("--regimes", default="frozen,joint")
    parser.add_argument("--heads", default="shared", help="Heads run on every dataset.")
    parser.add_argument(
        "--tied-datasets", default="digits", help="Datasets that also run the prompt-tied head."
    )
    parser.add_argument("--digits-epochs", type=int, default=150)
    parser.add_argument("--cifar-epochs", type=int, default=40)
    parser.add_argument(
        "--cifar-pretrain-epochs",
        type=int,
        default=20,
        help="Backbone pretraining on 6000 other-class images.",
    )
    parser.add_argument("--dim", type=int, default=48, help="Tiny-ViT width (CPU budget).")
    parser.add_argument("--depth", type=int, default=3, help="Tiny-ViT depth (CPU budget).")
    parser.add_argument("--patch", type=int, default=4, help="Tiny-ViT patch size (both datasets).")
    parser.add_argument("--cifar-per-class", type=int, default=300)
    parser.add_argument("--relearn-steps", type=int, default=100)
    parser.add_argument(
        "--kl-weight",
        type=float,
        default=1.0,
        help="Weight of the paper's KL-to-uniform term (0 ablates it).",
    )
    parser.add_argument(
        "--frozen-tuning",
        choices=["lora", "prompts"],
        default="lora",
        help="What the frozen regime trains besides prompts and head: LoRA q/v (paper) or nothing.",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "forgettable"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    begin = time.perf_counter()
    rows = []
    for dataset in args.datasets.split(","):
        train_all, hold_all = digits() if dataset == "digits" else cifar(args.cifar_per_class)
        spec = "tiny-vit-8" if dataset == "digits" else "tiny-vit-32"
        arch = resolve_architecture(
            spec, image_size=int(train_all.x.shape[1]), channels=int(train_all.x.shape[-1])
        )
        arch.update(dim=args.dim, depth=args.depth, patch_size=args.patch)
        recipe = recipe_for(dataset, args)
        train, holdout = classes(train_all, range(5)), classes(hold_all, range(5))
        for regime in args.regimes.split(","):
            state = None
            if regime == "frozen":
                others = joined(classes(train_all, range(5, 10)), classes(hold_all, range(5, 10)))
                if dataset == "cifar":
                    others = joined(classes(cifar_rest(args.cifar_per_class), range(5, 10)), others)
                epochs = args.cifar_pretrain_epochs if dataset == "cifar" else recipe.epochs
                state, secs = pretrain_backbone(others, arch=arch, recipe=replace(recipe, epochs=epochs))
                log.info(
                    "%s: backbone pretrained on classes 5-9 (%d images) in %.0fs", dataset, len(others), secs
                )
            heads = args.heads.split(",") + (
                ["prompt_tied"] if dataset in args.tied_datasets.split(",") else []
            )
            for head in dict.fromkeys(heads):
                rows.append(
                    run_setting(
                        dataset,
                        regime,
                        head,
                        train=train,
                        holdout=holdout,
                        arch=arch,
                        recipe=recipe,
                        backbone_state=state,
                        relearn_steps=args.relearn_steps,
                        frozen_tuning=args.frozen_tuning,
                    )
                )
                partial = {"rows": rows, "args": vars(args), "seconds": time.perf_counter() - begin}
                atomic_write_text(args.out + ".json", json.dumps(partial, indent=2) + "\n")
    seconds = time.perf_counter() - begin
    command = "python bench/forgettable_bench.py " + " ".join(sys.argv[1:])
    atomic_write_text(
        args.out + ".json",
        json.dumps({"rows": rows, "args": vars(args), "seconds": seconds, "command": command}, indent=2)
        + "\n",
    )
    atomic_write_text(args.out + ".md", markdown(rows, command.strip(), seconds))
    print(markdown(rows, command.strip(), seconds))


if __name__ == "__main__":
    main()
