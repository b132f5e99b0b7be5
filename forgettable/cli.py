"""`protect model ...`: train a pre-forgettable classifier, forget classes, predict, audit, inspect.

Thin commands: each parses options, calls one function of the library and renders the result.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from forgettable.config import TUNINGS
from protect.cli_options import device_options
from protect.errors import ConfigError, UnreadableImageError
from protect.paths import writable

if TYPE_CHECKING:
    from forgettable.audit import AuditReport


@click.group()
def model() -> None:
    """Pre-forgettable classifiers: one prompt token per class, forgetting = deleting it (arXiv 2509.15230).

    \b
    Example:
        protect model train digits.npz --out digits-model
        protect model forget digits-model --classes 3
    """


@model.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("--out", "out", required=True, type=click.Path(), help="Model folder to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model folder at --out.")
@click.option(
    "--backbone",
    default="tiny-vit",
    show_default=True,
    help="tiny-vit (from scratch), open_clip:MODEL:TAG or torchvision:NAME (pretrained).",
)
@click.option(
    "--backbone-from",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Start from the backbone of this model (trained with --tuning full, e.g. on other classes), frozen "
    "under --tuning lora or prompts: the paper's condition, offline.",
)
@click.option(
    "--tuning",
    type=click.Choice(["auto", *TUNINGS]),
    default="auto",
    show_default=True,
    help="lora: frozen backbone + LoRA q/v (paper); full: train everything; prompts: frozen backbone, only "
    "prompts and head (nothing shared learns the class); auto: full from scratch, lora otherwise.",
)
@click.option(
    "--head",
    type=click.Choice(["shared", "prompt_tied"]),
    default="shared",
    show_default=True,
    help="shared linear head (paper) or prompt-tied (forgetting also deletes the head row).",
)
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option(
    "--schedule",
    type=click.Choice(["constant", "cosine"]),
    default="constant",
    show_default=True,
    help="constant lr (paper) or 5% warm-up then cosine decay.",
)
@click.option(
    "--shift",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Augmentation: random translation by up to this many pixels.",
)
@click.option("--hflip", is_flag=True, help="Augmentation: random horizontal flips (not for digits or text).")
@click.option(
    "--holdout-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of each class kept out of training as the audit's non-members.",
)
@device_options
def train(
    data: str,
    out: str,
    backbone: str,
    backbone_from: str | None,
    tuning: str,
    head: str,
    epochs: int,
    batch_size: int,
    lr: float,
    schedule: str,
    shift: int,
    hflip: bool,
    holdout_fraction: float,
    overwrite: bool,
    device: str,
    seed: int,
) -> None:
    """Train a pre-forgettable classifier on DATA (class sub-folders, or an .npz with x, y, classes).

    \b
    Example:
        protect model train photos/ --out my-model --epochs 20
    """
    from forgettable.checkpoint import check_destination
    from forgettable.data import load_labeled
    from forgettable.train import Recipe, fit

    if Path(out).exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it (with its forgetting log)")
    check_destination(out, outside=(data,))  # before training, not after it
    writable(Path(out).parent)
    start = time.perf_counter()
    dataset = load_labeled(data)
    backbone_state, arch = None, None
    if backbone_from is not None:
        backbone, arch, backbone_state = _donor_backbone(backbone_from, dataset)
    recipe = Recipe(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule,
        shift=shift,
        hflip=hflip,
        seed=seed,
        holdout_fraction=holdout_fraction,
    )
    trained = fit(
        dataset,
        backbone=backbone,
        tuning=tuning,
        head=head,
        recipe=recipe,
        device=device,
        backbone_state=backbone_state,
        arch=arch,
        on_epoch=lambda e, loss: click.echo(f"epoch {e}/{epochs}  loss {loss:.4f}", err=True),
    )
    trained.save_pretrained(out)
    cfg = trained.config
    click.echo(
        f"trained {len(cfg.class_names)} classes ({cfg.backbone}, {cfg.tuning}, {cfg.head} head) "
        f"in {time.perf_counter() - start:.1f}s -> {out}"
    )


def _donor_backbone(path: str, dataset: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(backbone name, architecture, weights) of a saved model's backbone, checked against the data it will see."""
    from forgettable.backbones import resolve_architecture
    from forgettable.model import PreForgettableModel

    donor = PreForgettableModel.from_pretrained(path)
    cfg = donor.config
    if cfg.tuning != "full":
        raise ConfigError(
            f"--backbone-from {path}: its backbone was trained with --tuning {cfg.tuning}, so its own weights are "
            "not what it learned; give a model trained with --tuning full"
        )
    want = resolve_architecture(
        cfg.backbone, image_size=int(dataset.x.shape[1]), channels=int(dataset.x.shape[-1])
    )
    if (want["image_size"], want["channels"]) != (cfg.image_size, cfg.channels):
        raise ConfigError(
            f"--backbone-from {path} sees {cfg.image_size}px images with {cfg.channels} channel(s); this data "
            f"needs {want['image_size']}px with {want['channels']}"
        )
    return cfg.backbone, cfg.architecture(), donor.backbone.state_dict()


@model.command()
@click.argument("model_dir", type=click.Path())
@click.option("--classes", default="", help="Comma-separated class names to forget.")
@click.option(
    "--class",
    "exact",
    multiple=True,
    help="One class name, taken as it is (for names with commas); repeatable.",
)
@click.option(
    "--out", type=click.Path(), default=None, help="Write a new folder instead of updating MODEL_DIR."
)
def forget(model_dir: str, classes: str, exact: tuple[str, ...], out: str | None) -> None:
    """Forget classes by deleting their prompt tokens (and the optimiser state) from the checkpoint, atomically.

    \b
    Example:
        protect model forget my-model --classes cat,dog
        protect model forget my-model --class "Smith, John"
    """
    from forgettable.checkpoint import check_destination
    from forgettable.forget import forget_checkpoint

    names = [c.strip() for c in classes.split(",") if c.strip()] + list(exact)
    if not names:
        raise click.UsageError("name the classes to forget: --classes A,B or --class NAME")
    if out is not None and os.path.realpath(out) != os.path.realpath(model_dir):
        check_destination(out, outside=(model_dir,))  # a copy inside the model would nest two versions
    result = forget_checkpoint(model_dir, names, out=out)
    copy = Path(result.directory).resolve() != Path(model_dir).resolve()
    if result.forgotten:
        click.echo(
            f"forgot {', '.join(result.forgotten)} in {result.seconds * 1000:.0f} ms -> {result.directory}"
        )
    if result.already_forgotten:
        done = f"; copied to {result.directory}" if copy and not result.forgotten else ""
        click.echo(f"already forgotten (nothing to do): {', '.join(result.already_forgotten)}{done}")
    click.echo(f"remaining classes: {', '.join(result.remaining)}")
    if copy and result.forgotten:
        click.echo(f"note: {model_dir} still holds the deleted prompts; remove it if the goal is erasure")


@model.command()
@click.argument("model_dir", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Per input: the top class and the probabilities.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="cpu", show_default=True)
def predict(model_dir: str, images: tuple[str, ...], as_json: bool, device: str) -> None:
    """Classify IMAGES (files or folders) with the classes still present; forgotten ones are never output.

    \b
    Example:
        protect model predict my-model cat.jpg dog.png --json
    """
    import numpy as np

    from forgettable.model import PreForgettableModel
    from protect.devices import resolve_device
    from protect.imageio import find_images, load_image

    net = PreForgettableModel.from_pretrained(model_dir, device=resolve_device(device))
    files = [f for p in images for f in (find_images(p) if Path(p).is_dir() else [Path(p)])]
    if not files:
        raise ConfigError(f"no images found in {', '.join(images)}")
    rows: list[dict[str, Any]] = []
    for f in files:
        try:
            pixels = load_image(f).pixels
        except UnreadableImageError as e:  # one bad file: reported in its row, the others still predicted
            rows.append({"input": str(f), "error": str(e)})
            continue
        probs = net.predict_proba(pixels[None], mask_forgotten=True)[0]
        present = net.config.present or []
        rows.append(
            {
                "input": str(f),
                "top": net.config.class_names[int(np.argmax(probs))],
                "probabilities": {net.config.class_names[c]: round(float(probs[c]), 6) for c in present},
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if "error" in row:
                click.echo(f"{row['input']}\terror: {row['error']}")
            else:
                click.echo(f"{row['input']}\t{row['top']}\t{row['probabilities'][row['top']]:.3f}")
    if any("error" in row for row in rows):
        raise SystemExit(1)


@model.command()
@click.argument("model_dir", type=click.Path())
@click.option("--data", "data", required=True, type=click.Path(exists=True), help="The training DATA.")
@click.option("--forgotten", required=True, help="The class to audit (forgotten already, or forgotten here).")
@click.option(
    "--oracle", type=click.Path(), default=None, help="A model trained without the class; else retrained."
)
@click.option(
    "--holdout",
    type=click.Path(exists=True),
    default=None,
    help="Held-out samples (non-members); default: the split recorded at training time.",
)
@click.option(
    "--original", type=click.Path(), default=None, help="The model before forgetting (drift, hygiene)."
)
@click.option(
    "--relearn-steps",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Adam steps of the re-learning attack.",
)
@click.option(
    "--backbone-from",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="The model whose backbone MODEL_DIR started from (train --backbone-from): the oracle starts there too.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@device_options
def audit(
    model_dir: str,
    data: str,
    forgotten: str,
    oracle: str | None,
    backbone_from: str | None,
    holdout: str | None,
    original: str | None,
    relearn_steps: int,
    as_json: bool,
    device: str,
    seed: int,
) -> None:
    """Audit a forgotten class against a retrained oracle: accuracy, MIA, probe, re-learning, hygiene.

    \b
    Example:
        protect model audit my-model --data photos/ --forgotten cat --json
    """
    from forgettable.audit import audit_directory
    from forgettable.data import load_labeled

    dataset = load_labeled(data)
    report = audit_directory(
        model_dir,
        dataset,
        forgotten,
        backbone_state=_donor_backbone(backbone_from, dataset)[2] if backbone_from else None,
        holdout=load_labeled(holdout) if holdout else None,
        oracle_dir=oracle,
        original_dir=original,
        device=device,
        seed=seed,
        relearn_steps=relearn_steps,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(render_report(report))


def render_report(report: AuditReport) -> str:
    """A short human-readable summary of an `AuditReport`."""
    from forgettable.audit import STATISTICS

    m, o = report.model, report.oracle
    lines = [
        f"forgotten class: {report.forgotten}  (positive control: {report.control_class})",
        f"{'':32}{'model':>10}{'oracle':>10}",
    ]

    def row(name: str, a: float | None, b: float | None) -> None:
        if a is None and b is None:  # an attack that does not apply here (no class output, no reference)
            return
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"{name:32}{fmt(a):>10}{fmt(b):>10}")

    if report.before is not None:
        row("retain acc before forgetting", report.before["retain_acc"], None)
        row("  restricted to retained classes", report.before["retain_acc_restricted"], None)
    row("retain acc", m.retain_acc, o.retain_acc)
    row("forget acc (unmasked)", m.forget_acc, o.forget_acc)
    row("forget-class entropy (nats)", m.forget_entropy, o.forget_entropy)
    for stat in STATISTICS:
        a, b = m.mia.get(stat), o.mia.get(stat)
        row(f"MIA AUC ({stat})", a.auc if a else None, b.auc if b else None)
        a, b = m.mia_control.get(stat), o.mia_control.get(stat)
        row(f"  control MIA AUC ({stat})", a.auc if a else None, b.auc if b else None)
        a, b = m.mia_control_pooled.get(stat), o.mia_control_pooled.get(stat)
        row(f"  pooled control ({stat})", a.auc if a else None, b.auc if b else None)
        if report.mia_before:
            a = report.mia_before.get(stat)
            row(f"  before forgetting ({stat})", a.auc if a else None, None)
    row("linear-probe AUC", m.probe_auc, o.probe_auc)
    for a, b in zip(m.relearn, o.relearn, strict=True):
        fewer = f", got {a.shots}" if a.shots is not None and a.shots < a.n else ""  # fewer samples to draw
        row(f"re-learn n={a.n}{fewer}: forget acc", a.forget_acc, b.forget_acc)
    if report.hygiene is not None:
        h = report.hygiene
        lines.append(
            f"hygiene: prompt keys {h.prompt_keys or 'none'}, optimiser keys {h.optimizer_keys or 'none'}, "
            f"max cosine {'-' if h.max_cosine is None else f'{h.max_cosine:.3f}'}, "
            f"stale copies {', '.join(h.stale_copies) or 'none'}"
        )
    lines.append(
        "checks: "
        + ", ".join(
            f"{k}={'-' if v is None else ('pass' if v else 'FAIL')}" for k, v in report.checks.items()
        )
    )
    lines.extend(f"note: {n}" for n in report.notes)
    return "\n".join(lines)


@model.command()
@click.argument("model_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
def info(model_dir: str, as_json: bool) -> None:
    """Show a model's classes (present and forgotten), backbone, recipe and forgetting log.

    \b
    Example:
        protect model info my-model
    """
    from forgettable.checkpoint import read_checkpoint, stale_copies
    from forgettable.config import ForgettableConfig

    meta, _, _ = read_checkpoint(model_dir)
    cfg = ForgettableConfig.from_meta(meta, model_dir)
    stale = [str(p) for p in stale_copies(model_dir)]
    present = cfg.present_names
    summary = {
        "backbone": cfg.backbone,
        "tuning": cfg.tuning,
        "head": cfg.head,
        "classes_present": present,
        "classes_forgotten": [n for n in cfg.class_names if n not in present],
        "recipe": meta.get("recipe", {}),
        "forgetting_log": meta.get("forgetting_log", []),
        "stale_copies": stale,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"backbone: {cfg.backbone} ({cfg.tuning}, {cfg.head} head)")
    click.echo(f"classes present ({len(present)}): {', '.join(present)}")
    click.echo(f"classes forgotten: {', '.join(summary['classes_forgotten']) or 'none'}")
    for entry in summary["forgetting_log"]:
        click.echo(
            f"  {entry['at']}  forgot {entry['class']}: deleted {', '.join(entry['deleted'])} "
            f"and {entry.get('also_deleted', 'no other tensors')}; kept {entry['kept']}"
        )
    if stale:
        click.echo(
            f"warning: an interrupted save left older copies, which may hold deleted prompts: {', '.join(stale)}"
            " (delete them)",
            err=True,
        )
