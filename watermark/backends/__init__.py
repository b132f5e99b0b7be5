"""Base watermarkers behind one Protocol and a name registry (filled here by explicit imports)."""

from watermark.backends.base import (
    WatermarkBackend,
    check_fits,
    check_payload,
    check_strength,
    create_backend,
    list_backends,
    register_backend,
)
from watermark.backends.dwtdct import DwtDctBackend
from watermark.backends.hidden import HiddenBackend
from watermark.backends.rivagan import RivaganBackend

register_backend("dwtdct", DwtDctBackend)
register_backend("hidden", HiddenBackend)
register_backend("rivagan", RivaganBackend)

__all__ = [
    "WatermarkBackend",
    "check_fits",
    "check_payload",
    "check_strength",
    "create_backend",
    "list_backends",
    "register_backend",
]
