"""Run reports: `protect-report.json` (settings + one row per image) and `report.html` (before/after thumbnails)."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from protect.paths import atomic_write_text

REPORT_NAME = "protect-report.json"
HTML_NAME = "report.html"
THUMB = 192


def write_json_report(
    dst: str | Path,
    *,
    settings: dict[str, Any],
    rows: list[dict[str, Any]],
    skipped: list[dict[str, str]],
    name: str = REPORT_NAME,
    foreign: list[str] | None = None,
) -> Path:
    """Write the machine-readable report atomically and return its path; `foreign` lists files in the output
    that this run did not write (left by an earlier run or put there by hand)."""
    path = Path(dst) / name
    finite = [r["psnr"] for r in rows if isinstance(r.get("psnr"), (int, float))]
    body = {
        "protect_version": _version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings,
        "summary": {
            "protected": len(rows),
            "skipped": len(skipped),
            "max_linf": max((r["linf"] for r in rows), default=0),
            "unchanged": sum(1 for r in rows if r.get("unchanged")),
            "mean_psnr": round(float(np.mean(finite)), 3) if finite else None,
            "not_from_this_run": len(foreign or []),
        },
        "images": rows,
        "skipped": skipped,
        "not_from_this_run": foreign or [],
    }
    atomic_write_text(path, json.dumps(body, indent=2, default=jsonable) + "\n")
    return path


def html_row(row: dict[str, Any], before: np.ndarray, after: np.ndarray) -> str:
    """One table row of `report.html`: thumbnails of the original, the saved copy and their difference (amplified
    so the largest change is white). Made when the copy is written, so a job keeps 48 small rows, not 48 pairs of
    full-resolution photos (3.5 GB for 12-megapixel ones)."""
    diff = np.maximum(before, after) - np.minimum(before, after)  # |before - after| without a wider copy
    gain = 255.0 / max(int(diff.max()), 1)
    for top in range(0, len(diff), 256):
        diff[top : top + 256] = np.rint(diff[top : top + 256] * gain)
    stats = ", ".join(f"{k} {row[k]}" for k in ("psnr", "ssim", "linf") if k in row)
    return (
        "<tr>"
        f"<td>{html.escape(printable(str(row.get('source', ''))))}</td>"
        f"<td>{_img_tag(before)}</td><td>{_img_tag(after)}</td><td>{_img_tag(diff)}</td>"
        f"<td>{html.escape(stats)}</td></tr>"
    )


def write_html_report(dst: str | Path, rows: Iterable[str], *, title: str) -> Path:
    """One self-contained page of `html_row`s."""
    page = (
        "<!doctype html><meta charset='utf-8'>"
        f"<title>{html.escape(printable(title))}</title>"
        "<style>body{font-family:sans-serif}td{padding:4px;vertical-align:top}img{max-width:192px}</style>"
        f"<h1>{html.escape(printable(title))}</h1>"
        "<p>Difference images are amplified so the largest change is white.</p>"
        "<table><tr><th>source</th><th>original</th><th>protected</th><th>difference</th><th>quality</th></tr>"
        + "".join(rows)
        + "</table>\n"
    )
    path = Path(dst) / HTML_NAME
    atomic_write_text(path, page)
    return path


def printable(name: str) -> str:
    """A file name as UTF-8 text can show it: bytes that were not UTF-8 (kept by Python as lone surrogates)
    become U+FFFD, so the page can be written at all."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that did not come from undecodable bytes
        return name.encode("utf-8", "replace").decode("utf-8")


def _img_tag(pixels: np.ndarray) -> str:
    arr = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    im = Image.fromarray(arr)
    im.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return f"<img src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def _version() -> str:
    from protect import __version__

    return __version__


def jsonable(obj: Any) -> Any:
    """`json.dumps(default=...)` for the numpy scalars and paths that settings and rows carry."""
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
