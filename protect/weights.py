"""Pretrained weights (open_clip, torchvision): one cache folder under protect's home, one error for a failed fetch.

Every command that takes a pretrained model fetches it through `open_clip_model` or `torchvision_state`, once, into
`cache_dir(library)`, and runs offline afterwards. A fetch fails for one of two reasons the user can fix differently: the cache folder cannot be
written (a full disk, a read-only or misplaced `PROTECT_HOME`), or the weights are not cached and there is no network.
`fetch_error` tells them apart, so an unusable cache is never blamed on the network.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from protect.errors import ConfigError, OfflineError, ProtectError, one_line
from protect.paths import home

# A file-system errno means the cache folder is the problem; network failures carry none of these.
_CACHE_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENOTDIR,
    errno.EEXIST,
}


def cache_dir(library: str) -> Path:
    """Where `library` ("open_clip", "torchvision") keeps the weights it fetched for protect."""
    return home() / "weights" / library


def open_clip_model(name: str, tag: str | None, *, device: Any = "cpu", require: bool = False) -> Any:
    """open_clip's model `name` with weights `tag` (None: random init), fetched into the cache on first use;
    `require` refuses a model whose weights did not load."""
    import open_clip

    cache = cache_dir("open_clip")
    try:
        return open_clip.create_model(
            name, pretrained=tag, device=device, cache_dir=str(cache), require_pretrained=require
        )
    except (OSError, RuntimeError, ValueError) as e:  # the hub client's network failures are OSErrors
        raise fetch_error(f"open_clip:{name}:{tag}", e, cache) from e


def torchvision_state(weights: Any, spec: str) -> dict[str, Any]:
    """The state dict of torchvision `weights` (a `WeightsEnum` member), fetched into the cache on first use."""
    cache = cache_dir("torchvision")
    try:
        return weights.get_state_dict(progress=False, model_dir=str(cache))
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError
        raise fetch_error(spec, e, cache) from e


def fetch_error(spec: str, error: BaseException, cache: Path) -> ProtectError:
    """The one-line error for weights of `spec` that could not be fetched or loaded into `cache`."""
    cause = _cache_cause(error)
    if cause is not None:
        return ConfigError(
            f"cannot use the weights cache for {spec} at {cause.filename or cache} ({cause.strerror}); "
            "free some space or set PROTECT_HOME to a writable folder"
        )
    return OfflineError(
        f"cannot fetch pretrained weights for {spec} (no network and not cached in {cache}?): {one_line(error)}"
    )


def _cache_cause(error: BaseException) -> OSError | None:
    """The file-system error behind `error`, if any: libraries re-raise it (open_clip as a RuntimeError
    "Failed to download weights"), so the whole `__cause__` / `__context__` chain is searched."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _CACHE_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None
