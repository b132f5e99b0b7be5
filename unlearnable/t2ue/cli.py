"""`protect t2ue`: train a caption-to-noise generator, generate noise from captions only, apply it locally."""

from __future__ import annotations

from pathlib import Path

import click

from protect.batch import WriteOptions
from protect.cli_options import device_options, echo_skipped, epsilon_option, write_options
from protect.errors import ConfigError
from unlearnable.t2ue.generator import list_generators


@click.group(name="t2ue")
def t2ue() -> None:
    """Unlearnable noise from text descriptions alone (T2UE, zero contact).

    \b
    Example:
        protect t2ue train pairs/ --out gen
        protect t2ue noise photos/captions.csv --generator gen --size 224x224 --out noise.npz
        protect t2ue apply noise.npz photos --out protected
    """


@t2ue.command(name="train")
@click.argument("pairs", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out", "out", required=True, type=click.Path(path_type=Path), help="Generator folder to write."
)
@click.option(
    "--clip", default=None, help="open_clip surrogate (e.g. ViT-B-32); default: a tiny CLIP trained on PAIRS."
)
@click.option(
    "--pretrained", default=None, help="open_clip weights tag for --clip (e.g. openai); fetched once, cached."
)
@click.option(
    "--arch",
    type=click.Choice(list_generators()),
    default="ssa",
    show_default=True,
    help="ssa: the paper's SSA-GAN generator; unet: diffusers UNet ablation.",
)
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True, help="Generator epochs.")
@click.option(
    "--clip-epochs",
    type=click.IntRange(1),
    default=15,
    show_default=True,
    help="Epochs for the offline tiny surrogate (ignored with --clip).",
)
@epsilon_option()
@click.option(
    "--size",
    type=click.IntRange(8),
    default=32,
    show_default=True,
    help="Training image resolution (square).",
)
@click.option(
    "--gen-size", type=click.IntRange(8), default=None, help="Generator resolution (default: half of --size)."
)
@click.option(
    "--lr",
    type=click.FloatRange(0, min_open=True),
    default=3e-3,
    show_default=True,
    help="Generator learning rate (AdamW, cosine).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing generator folder at --out.")
@device_options
def train(
    pairs: Path,
    out: Path,
    clip: str | None,
    pretrained: str | None,
    arch: str,
    epochs: int,
    clip_epochs: int,
    epsilon: float,
    size: int,
    gen_size: int | None,
    lr: float,
    overwrite: bool,
    device: str,
    seed: int,
) -> None:
    """Train a generator on image-caption PAIRS (a folder with captions.csv, or an .npz with x and captions).

    The generator learns noise that makes a frozen CLIP surrogate match each image to its caption (the paper's
    Eq. 4); after training it needs only captions. Protection strength depends on the surrogate.

    \b
    Example:
        protect t2ue train pairs/ --out gen --epochs 30
        protect t2ue train pairs.npz --out gen-b32 --clip ViT-B-32 --pretrained openai --size 64
    """
    from unlearnable.t2ue.train import train_t2ue

    summary = train_t2ue(
        pairs,
        out,
        clip=clip,
        pretrained=pretrained,
        arch=arch,
        epochs=epochs,
        clip_epochs=clip_epochs,
        eps=epsilon,
        image_size=size,
        gen_size=gen_size,
        lr=lr,
        seed=seed,
        device=device,
        overwrite=overwrite,
    )
    click.echo(
        f"generator -> {out}  ({summary['pairs']} pairs, {summary['seconds']} s; surrogate InfoNCE clean "
        f"{summary['final_clean_loss']:.3f} -> protected {summary['final_protected_loss']:.3f})"
    )


@t2ue.command(name="noise")
@click.argument("captions", required=False, type=click.Path(path_type=Path))
@click.option(
    "--generator",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Generator folder from `protect t2ue train`.",
)
@click.option("--size", required=True, help="Noise size HxW, e.g. 32x32 or 224x224.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Noise .npz to write.")
@click.option(
    "--classes", default=None, help="Class-wise mode: comma-separated class names instead of CAPTIONS."
)
@click.option(
    "--template", default="a photo of a {}", show_default=True, help="Prompt template for --classes."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing file at --out.")
@device_options
def noise(
    captions: Path | None,
    generator: Path,
    size: str,
    out: Path,
    classes: str | None,
    template: str,
    overwrite: bool,
    device: str,
    seed: int,
) -> None:
    """Generate noise from CAPTIONS.csv (columns file, caption) alone: no image is read.

    With --classes, one templated prompt and one fixed z per class (class-wise noise, applied by label).

    \b
    Example:
        protect t2ue noise photos/captions.csv --generator gen --size 224x224 --out noise.npz --seed 1
        protect t2ue noise --classes cat,dog --generator gen --size 32x32 --out classes.npz
    """
    from unlearnable.t2ue import classwise_noise, noise_from_captions_file

    if (captions is None) == (classes is None):
        raise click.UsageError("give either CAPTIONS.csv or --classes NAMES")
    if not str(out).endswith(".npz"):
        raise ConfigError(f"--out must end in .npz, got {out}")
    if out.is_dir():
        raise ConfigError(f"--out {out} is an existing folder; give a .npz file path")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out} exists; pass --overwrite to replace it, or choose another file")
    if classes is not None:
        names = [c.strip() for c in classes.split(",")]
        result = classwise_noise(
            names, generator=generator, size=size, seed=seed, template=template, device=device
        )
    else:
        result = noise_from_captions_file(captions, generator=generator, size=size, seed=seed, device=device)
    result.save(out)
    n, h, w, _ = result.delta.shape
    click.echo(f"wrote {n} perturbation(s) {h}x{w} (eps {round(result.eps * 255)}/255, seed {seed}) -> {out}")


@t2ue.command(name="apply")
@click.argument(
    "noise_file", metavar="NOISE.npz", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "dst",
    required=True,
    type=click.Path(path_type=Path),
    help="Destination folder (or .npz for an .npz source); may neither lie inside SRC nor contain it.",
)
@epsilon_option(
    "Largest change per pixel to allow: noise claiming or making more is refused (its own bound is not trusted)."
)
@write_options
def apply(
    noise_file: Path,
    src: Path,
    dst: Path,
    epsilon: float,
    fmt: str,
    quality: int,
    keep_exif: bool,
    resume: bool,
) -> None:
    """Add the noise in NOISE.npz to the images in SRC locally and write protected copies to --out.

    Adds, clips to [0, 255], rounds and reports exactly like `protect images`; originals are never modified. Noise
    whose bound exceeds --epsilon, or that is not finite, is refused before anything is written.

    \b
    Example:
        protect t2ue apply noise.npz photos --out protected
    """
    from unlearnable.t2ue.apply import write_protected

    options = WriteOptions(fmt=fmt, quality=quality, keep_exif=keep_exif, resume=resume)
    job = write_protected(
        noise_file, src, dst, eps=epsilon, options=options, settings={"noise": str(noise_file)}
    )
    status = job.finish()
    if job.rows:
        click.echo(
            f"protected {len(job.rows)} image(s) -> {dst}  (max change {max(r['linf'] for r in job.rows)}/255)"
        )
    echo_skipped(job.skipped)
    click.echo(f"report: {job.report_dir / job.options.report_name}")
    if not job.rows:
        click.echo("nothing could be protected", err=True)
    resized = sum(1 for r in job.rows if "resized to" in r.get("note", ""))
    if resized:
        click.echo(
            f"warning: the noise was resized to fit {resized} image(s) (see 'note' in the report); generate it "
            "at the images' size with --size for noise as trained",
            err=True,
        )
    raise SystemExit(status)
