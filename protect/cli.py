"""The `protect` command: one Click root group; each capability attaches its own sub-command lazily.

Sub-commands are imported only when used, so `protect memory ...` never pays for importing torch.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

from protect import __version__
from protect.errors import ConfigError, ProtectError

SUBCOMMANDS = {
    "images": (
        "unlearnable.cli",
        "images",
        "Protect photos or a dataset with unlearnable noise (BEO, EM, T2UE).",
    ),
    "t2ue": (
        "unlearnable.t2ue.cli",
        "t2ue",
        "Unlearnable noise from text descriptions alone (zero contact).",
    ),
    "watermark": ("watermark.cli", "watermark", "Mark a dataset release and verify ownership later (AMUSE)."),
    "model": ("forgettable.cli", "model", "Pre-forgettable classifiers: train, forget a class, audit."),
    "memory": ("memory_store.cli", "memory", "Local agent memory with trust and complete erasure (MCP)."),
}


class UserError(click.ClickException):
    """A `ProtectError` shown as one line; unusable arguments exit 2, other failures 1."""

    def __init__(self, error: ProtectError) -> None:
        super().__init__(str(error))
        self.exit_code = 2 if isinstance(error, ConfigError) else 1


class LazyGroup(click.Group):
    """A group whose sub-commands live in other packages and are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SUBCOMMANDS:
            module, attr, _ = SUBCOMMANDS[cmd_name]
            try:
                return getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError as e:
                if e.name and module.startswith(e.name):
                    return _unavailable(cmd_name)
                raise
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text without importing every sub-package.
        rows = [(name, help_) for name, (_, _, help_) in sorted(SUBCOMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:  # a bare group: its help, as Click shows it
            raise
        except click.UsageError as e:
            # Click prints usage + a hint + the error: make it the one line every other refusal is
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
            one = click.ClickException(e.format_message() + hint)
            one.exit_code = 2
            raise one from e
        except ProtectError as e:
            raise UserError(e) from e
        except OSError as e:  # a full disk, a vanished folder...: what the user can fix, in one line
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            where = f": {e.filename}" if e.filename else ""
            raise click.ClickException(f"{e.strerror or e}{where}") from e
        except KeyboardInterrupt:  # (a declined confirmation is click.Abort: exit 1, as before)
            click.echo("Aborted.", err=True)
            ctx.exit(130)  # 128 + SIGINT, as shells report an interrupted command


def _unavailable(name: str) -> click.Command:
    @click.command(name=name, help=SUBCOMMANDS[name][2])
    def cmd() -> None:
        raise click.ClickException(f"'protect {name}' is not part of this installation yet")

    return cmd


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="protect")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
def cli(verbose: int) -> None:
    """Defend your data before it is taken.

    \b
    Example:
        protect images examples/photos --out protected
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
