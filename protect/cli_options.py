"""Option types, decorator factories and output lines shared by every sub-command."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any, TypeVar

import click

from protect.devices import DEVICES
from protect.imageio import OUTPUT_FORMATS

F = TypeVar("F", bound=Callable[..., Any])


class Epsilon(click.ParamType):
    """A perturbation bound in [0, 1] written as a float (0.0314) or a fraction of 255 (8/255)."""

    name = "epsilon"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            eps = float(Fraction(str(value).strip()))
        except (ValueError, ZeroDivisionError):
            self.fail(f"{value!r} is not a number or a fraction like 8/255", param, ctx)
        if not 0 < eps <= 1:
            self.fail(f"{value!r} must lie in (0, 1] (pixels are scaled to [0, 1]; try 8/255)", param, ctx)
        return eps


def epsilon_option(help: str = "L-infinity bound per pixel.") -> Callable[[F], F]:
    """`--epsilon`, default 8/255, parsed by `Epsilon`."""
    return click.option("--epsilon", type=Epsilon(), default="8/255", show_default=True, help=help)


def device_options(fn: F) -> F:
    """`--device auto|cpu|cuda|mps` and `--seed N`."""
    fn = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")(fn)
    fn = click.option(
        "--device", type=click.Choice(DEVICES), default="auto", show_default=True, help="Where to compute."
    )(fn)
    return fn


def write_options(fn: F) -> F:
    """Options that decide how protected copies are written (shared by every command that writes images)."""
    decorators = [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(sorted(OUTPUT_FORMATS)),
            default="png",
            show_default=True,
            help="Output format for folder sources; lossy formats weaken the protection (see the report).",
        ),
        click.option(
            "--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality."
        ),
        click.option(
            "--keep-exif", is_flag=True, help="Keep EXIF metadata (GPS included); stripped by default."
        ),
        click.option(
            "--resume", is_flag=True, help="Continue an interrupted run without redoing finished files."
        ),
    ]
    for d in reversed(decorators):
        fn = d(fn)
    return fn


def echo_skipped(skipped: list[dict[str, str]], verb: str = "skipped") -> None:
    """One line per file a batch left out, on stdout with the run's summary (the batch itself only logs them at
    INFO, so a run's skips are listed once, not also on stderr in the middle of the progress bar)."""
    for s in skipped:
        click.echo(f"{verb} {s['source']}: {s['reason']}")
