"""`protect watermark`: mark a dataset release (AMUSE) and verify ownership of leaked copies."""

from __future__ import annotations

import json
from pathlib import Path

import click

from protect.batch import WriteOptions
from protect.cli_options import echo_skipped, write_options
from watermark.api import (
    KEY_ENV,
    WatermarkSettings,
    embed_folder,
    message_to_bits,
    read_manifest,
    resolve_key,
)
from watermark.api import verify as verify_suspect
from watermark.backends import list_backends


def _key_options(fn):
    fn = click.option("--key-file", type=click.Path(dir_okay=False), help="Read the key from this file.")(fn)
    fn = click.option("--key", help=f"Secret key (or --key-file, or ${KEY_ENV}); never written anywhere.")(fn)
    return fn


def _layout_options(fn):
    fn = click.option(
        "--strength",
        type=float,
        default=None,
        help="Embedding strength (dwtdct: QIM step 6-100, default 40; hidden: residual scale 0.25-1, default 0.6; "
        "rivagan: 0.25-1, default 1).",
    )(fn)
    fn = click.option(
        "--backend",
        type=click.Choice(list_backends()),
        default="dwtdct",
        show_default=True,
        help="Base watermarker.",
    )(fn)
    fn = click.option(
        "--tau",
        type=click.FloatRange(0, 1),
        default=0.8,
        show_default=True,
        help="AMUSE protection requirement k/N <= tau; 0 puts the whole message in every image.",
    )(fn)
    return fn


@click.group()
def watermark() -> None:
    """Mark a dataset release and verify ownership later (AMUSE, arXiv 2403.05628)."""


@watermark.command()
@click.argument("src", type=click.Path(exists=True))
@click.option(
    "--out", "dst", required=True, type=click.Path(), help="Destination folder (or .npz for an .npz source)."
)
@click.option("--message", required=True, help="Owner message (text, or bits:0101...).")
@_key_options
@_layout_options
@write_options
@click.option(
    "--no-self-check",
    is_flag=True,
    help="Skip verifying the written release at the end (it reads every marked file again).",
)
def embed(
    src: str,
    dst: str,
    message: str,
    key: str | None,
    key_file: str | None,
    tau: float,
    backend: str,
    strength: float | None,
    fmt: str,
    quality: int,
    keep_exif: bool,
    resume: bool,
    no_self_check: bool,
) -> None:
    """Write watermarked copies of SRC and a manifest.

    Copies go to --out (originals untouched); watermark-manifest.json goes beside it, into OUT-report/: settings,
    per-image PSNR/SSIM and how many leaked images recover the message (never the key).

    \b
    Example:
        protect watermark embed photos --out release --message AB --key-file owner.key --tau 0.8
    """
    options = WriteOptions(fmt=fmt, quality=quality, keep_exif=keep_exif, resume=resume)
    job = embed_folder(
        src,
        dst,
        message=message,
        key=resolve_key(key, key_file),
        tau=tau,
        backend=backend,
        strength=strength,
        options=options,
        self_check=not no_self_check,
    )
    status = job.finish()
    layout = job.settings["layout"]
    psnrs = [r["psnr"] for r in job.rows if r.get("psnr") is not None]
    click.echo(f"marked {len(job.rows)} images, skipped {len(job.skipped)} -> {job.dst}")
    echo_skipped(job.skipped)
    click.echo(
        f"layout: {layout['n_chunks']} chunks, {layout['per_image']} per image, {layout['sub_bits']} bits "
        f"per image (guarantee k/N = {layout['guarantee']}); mean PSNR "
        + (f"{sum(psnrs) / len(psnrs):.2f} dB" if psnrs else "n/a")
    )
    cov = job.settings["coverage"]
    click.echo(
        f"recovery needs {cov['worst_case_images']} images in the worst case, "
        f"{cov['random_images_for_95pct']} random images for 95% "
        f"(manifest: {job.report_dir / 'watermark-manifest.json'})"
    )
    check = job.settings.get("self_check")
    if check and "p_value" in check:
        click.echo(
            f"self-check: verify on {job.dst} as written says {check['verdict']} (p = {check['p_value']:.3g})"
        )
    click.get_current_context().exit(status)


@watermark.command()
@click.argument("suspect", type=click.Path(exists=True))
@_key_options
@click.option(
    "--message", help="The message you claim (text or bits:0101...); tests it and reports bit accuracy."
)
@click.option(
    "--message-bits", type=click.IntRange(1), help="Length of the embedded message in bits (if no --message)."
)
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False),
    help="watermark-manifest.json from embed: its settings replace --tau/--backend/--strength.",
)
@_layout_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify(
    suspect: str,
    key: str | None,
    key_file: str | None,
    message: str | None,
    message_bits: int | None,
    manifest: str | None,
    tau: float,
    backend: str,
    strength: float | None,
    as_json: bool,
) -> None:
    """Check whether SUSPECT carries your watermark.

    SUSPECT is a folder, an image or an .npz. Prints match (with the message), different-message (your key's
    watermark, but not the claimed message), no-watermark or inconclusive; exit status 0 for match, 1
    otherwise, 2 for an error.

    \b
    Example:
        protect watermark verify leaked/ --key-file owner.key --message AB --json
    """
    if manifest:
        settings = read_manifest(manifest)
        if message_bits is not None and message_bits != settings.message_bits:
            raise click.UsageError(
                f"--message-bits {message_bits} contradicts the manifest's {settings.message_bits}; drop one"
            )
    else:
        length = len(message_to_bits(message)) if message else message_bits
        if length is None:
            raise click.UsageError(
                "pass --message, --message-bits or --manifest (the message length is needed)"
            )
        settings = WatermarkSettings(message_bits=length, tau=tau, backend=backend, strength=strength)
    result = verify_suspect(Path(suspect), resolve_key(key, key_file), message=message, settings=settings)
    if result.verdict == "no-watermark" and not manifest:
        # the settings were inferred from the arguments: a wrong length, tau or backend reads as no watermark
        result.reason += (
            f"; read as {settings.message_bits}-bit messages with --tau {settings.tau:g} and --backend "
            f"{settings.backend}: if the release was made otherwise, pass its --manifest"
        )
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(f"{result.verdict}: {result.reason}")
        if result.message is not None:
            click.echo(f"message: {result.message}")
        click.echo(
            f"p-value {result.p_value:.3g} (empirical {result.empirical_p_value:.3g}); images read "
            f"{result.images_read}, used {result.images_used}"
        )
    click.get_current_context().exit(0 if result.verdict == "match" else 1)
