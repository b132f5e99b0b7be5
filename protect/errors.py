"""One error hierarchy for every part of protect.

The CLI turns a `ProtectError` into one clear line (`Error: ...`); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class ProtectError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(ProtectError, ValueError):
    """An argument, option or file has a value that cannot be used."""


class UnknownNameError(ConfigError):
    """A name (method, backbone, backend, class) is not among the known ones."""


class MissingDependencyError(ProtectError, ImportError):
    """An optional package is needed; the message says how to install it."""


class IntegrityError(ProtectError):
    """A file (checkpoint, database, report) is corrupt, truncated or inconsistent."""


class UnreadableImageError(ConfigError):
    """An image file cannot be decoded: an input the user can fix, so where it stops a command, it exits 2."""


class OfflineError(ProtectError):
    """Pretrained weights are not cached and cannot be fetched (no network)."""


def one_line(error: BaseException, limit: int = 240) -> str:
    """An exception's message on one line, cut to `limit` characters (state_dict errors run to hundreds of lines)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
