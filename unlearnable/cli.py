"""`protect images`: the main job. Thin: parse options, call `unlearnable.api.protect_images`, print a summary."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from protect.batch import WriteOptions
from protect.cli_options import device_options, echo_skipped, epsilon_option, write_options
from protect.devices import PRECISIONS, resolve_device
from protect.errors import ConfigError
from protect.imageio import check_destination, load_npz, plan_outputs, probe_image, relative, require_images
from unlearnable.api import DEFAULT_STEPS, METHODS, ProtectConfig, protect_images
from unlearnable.labels import LABEL_MODES
from unlearnable.reference import REFERENCE_PREFIX
from unlearnable.surrogates import check_surrogate


@click.command(name="images")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "dst",
    required=True,
    type=click.Path(path_type=Path),
    help="Destination folder (or .npz for an .npz source); may neither lie inside SRC nor contain it.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS + ("t2ue",)),
    default="beo",
    show_default=True,
    help="beo: Bayes-error optimisation; em / em-class: error-minimising noise; adv: targeted adversarial "
    "poison; t2ue: noise from captions.",
)
@epsilon_option("L-infinity bound per pixel (t2ue: the cap the generator's noise must stay within).")
@click.option(
    "--labels",
    type=click.Choice(LABEL_MODES),
    default="auto",
    show_default=True,
    help="Classes from sub-folders (or the .npz 'y'), k-means clusters, or auto.",
)
@click.option(
    "--surrogate",
    default="scratch",
    show_default=True,
    help="Feature space: scratch, open_clip:MODEL:TAG or torchvision:resnet18.",
)
@click.option(
    "--steps",
    type=click.IntRange(0),
    default=None,
    help="Optimisation passes (default: beo 20, em 10, adv 20).",
)
@click.option(
    "--refit-every",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="BEO: refit the scratch surrogate on the perturbed images every K passes (1 = closest to the paper).",
)
@click.option(
    "--resolution",
    type=click.IntRange(8),
    default=None,
    help="Side of the surrogate's view (default 32 for small images, 64 otherwise).",
)
@click.option(
    "--clusters",
    type=click.IntRange(2),
    default=None,
    help="Number of k-means classes for --labels clusters.",
)
@click.option(
    "--generator", type=click.Path(exists=True, path_type=Path), help="T2UE generator folder (--method t2ue)."
)
@click.option(
    "--captions", type=click.Path(exists=True, path_type=Path), help="captions.csv (file,caption) for t2ue."
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="Surrogate arithmetic: bf16 autocast where the hardware runs it natively (auto), or fp32.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be protected; write nothing.")
@write_options
@device_options
def images(
    src: Path,
    dst: Path,
    method: str,
    epsilon: float,
    labels: str,
    surrogate: str,
    steps: int | None,
    refit_every: int,
    resolution: int | None,
    clusters: int | None,
    generator: Path | None,
    captions: Path | None,
    precision: str,
    dry_run: bool,
    fmt: str,
    quality: int,
    keep_exif: bool,
    resume: bool,
    device: str,
    seed: int,
) -> None:
    """Write protected copies of the images in SRC (a folder or an .npz) to --out.

    Models trained on the protected copies learn little from them. Originals are never modified; the output mirrors
    SRC's relative paths; protect-report.json and report.html go beside it, into OUT-report/ (they show the originals:
    keep them out of what you publish).

    \b
    Example:
        protect images examples/photos --out protected
        protect images cifar.npz --out cifar-protected.npz --method em
    """
    check_destination(src, dst)
    options = WriteOptions(fmt=fmt, quality=quality, keep_exif=keep_exif, resume=resume)
    if dry_run and method == "t2ue":
        _dry_run(src, dst, fmt, f"method t2ue, epsilon cap {round(epsilon * 255)}/255")
        return
    if method == "t2ue":
        job = _t2ue(src, dst, generator, captions, seed, device, epsilon, options)
        status = job.finish()
        _summary(job)
        raise SystemExit(status)
    config = ProtectConfig(
        method=method,
        epsilon=epsilon,
        steps=steps,
        labels=labels,
        surrogate=surrogate,
        resolution=resolution,
        refit_every=refit_every,
        clusters=clusters,
        seed=seed,
        device=device,
        precision=precision,
    )
    check_surrogate(surrogate)
    resolve_device(device)  # before the progress bar: a missing accelerator is one line, nothing else
    if dry_run:
        _dry_run(src, dst, fmt, f"method {method}, epsilon {config.eps_levels}/255")
        return
    total = config.steps if config.steps is not None else DEFAULT_STEPS[method]
    # delay: an input refused at once (a damaged .npz) shows its one Error line, not an empty bar above it
    bar = tqdm(
        total=total, desc=f"protect {method}", unit="pass", file=sys.stderr, dynamic_ncols=True, delay=1
    )
    with bar:

        def progress(info: dict) -> None:
            if bar.n >= bar.total:
                bar.reset()
            bar.update(1)
            bar.set_postfix({k: v for k, v in info.items() if k != "pass"})

        job = protect_images(src, dst, config=config, options=options, callback=progress)
    status = job.finish()
    _summary(job)
    if method == "beo" and _one_class(job.settings):
        click.echo(SINGLE_OWNER_NOTE, err=True)
    raise SystemExit(status)


# bench/results/unlearnable_owner.md and unlearnable_owner_automobile.md (victim accuracy on the owner's class)
SINGLE_OWNER_NOTE = (
    "note: SRC is one class (one owner's photos). In our benchmark of that case, BEO changed a victim's accuracy on "
    "the owner's class by +1 / -11 points, --method em by -26.5 / -71.5: prefer --method em for your own photos"
)


def _one_class(settings: dict) -> bool:
    """Whether SRC held a single class of the user's, so BEO ran against the bundled reference images only."""
    runs = settings.get("runs") or [settings.get("run", {})]  # folder chunks, or one .npz run
    if not any(run.get("reference_anchors") for run in runs):
        return False
    own = {c for run in runs for c in run.get("classes", []) if not c.startswith(REFERENCE_PREFIX)}
    return len(own) <= 1


def _summary(job) -> None:
    rows = job.rows
    if rows:
        psnrs = [r["psnr"] for r in rows if r.get("psnr") is not None]
        mean_psnr = f"{sum(psnrs) / len(psnrs):.1f} dB" if psnrs else "n/a"
        click.echo(
            f"protected {len(rows)} image(s) -> {job.dst}  (max change {max(r['linf'] for r in rows)}/255, "
            f"mean PSNR {mean_psnr})"
        )
    echo_skipped(job.skipped)
    click.echo(f"report: {job.report_dir / job.options.report_name}")
    if not rows:
        click.echo("nothing could be protected", err=True)
    unchanged = sum(1 for r in rows if r.get("unchanged"))
    if unchanged:
        click.echo(_unchanged_warning(unchanged, len(rows)), err=True)


def _unchanged_warning(unchanged: int, total: int) -> str:
    """Why a copy can come out pixel-identical, and what to try: exit 0 alone would hide that nothing was done."""
    return (
        f"warning: protection did nothing for {unchanged} of {total} image(s) (saved copy identical to the "
        "original; 'unchanged' in the report). The optimisation had no gradient to follow, which happens when "
        "there are very few images per class (the surrogate already separates them perfectly); add more images "
        "or try --method em"
    )


def _dry_run(src: Path, dst: Path, fmt: str, what: str) -> None:
    """List what a run would write, with the output path each source would get (the real plan, collisions resolved)."""
    if src.is_file():
        data = load_npz(src)
        click.echo(f"would protect {len(data.x)} images {data.x.shape[1:]} from {src} -> {dst} ({what})")
        return
    files = require_images(src, exclude=(dst,))
    unreadable = {f: reason for f in files if (reason := probe_image(f))}
    rel = {f: relative(f, src) for f in files}
    plan = plan_outputs(dst, rel.values(), fmt)  # the real run plans every listed file, readable or not
    rels = [rel[f] for f in files if f not in unreadable]
    folders = sorted({rel.parts[0] for rel in rels if len(rel.parts) > 1})
    click.echo(
        f"would protect {len(rels)} file(s) from {src} -> {dst} ({what}, "
        f"class folders: {', '.join(folders) or 'none'})"
    )
    for rel in rels:
        click.echo(f"  {rel} -> {plan[rel]}")
    echo_skipped([{"source": str(f), "reason": r} for f, r in unreadable.items()], verb="would skip")


def _t2ue(
    src: Path,
    dst: Path,
    generator: Path | None,
    captions: Path | None,
    seed: int,
    device: str,
    epsilon: float,
    options: WriteOptions,
):
    if generator is None or captions is None:
        raise ConfigError("--method t2ue needs --generator GEN_DIR and --captions CAPTIONS.csv")
    from unlearnable.t2ue import shortcut

    return shortcut(
        src,
        dst,
        generator=generator,
        captions=captions,
        seed=seed,
        device=device,
        eps=epsilon,
        options=options,
    )
