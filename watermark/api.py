"""Python API: mark a release (`embed_folder`, `embed_arrays`) and verify a suspect set (`verify`,
`verify_arrays`).

Example:
    from watermark.api import embed_folder, verify
    embed_folder("photos", "release", message="AB", key=b"secret", tau=0.8).finish()  # writes the manifest
    print(verify("leaked", key=b"secret", message="AB").verdict)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protect.batch import CopyJob, WriteOptions
from protect.errors import ConfigError, ProtectError
from protect.imageio import (
    find_images,
    load_image,
    load_npz,
    overlong_output,
    plan_outputs,
    relative,
    require_images,
)
from watermark.backends import WatermarkBackend, check_fits, check_payload, check_strength, create_backend
from watermark.codec import (
    CRC_BITS,
    Layout,
    assign,
    baseline_layout,
    choose_layout,
    coverage_probability,
    images_needed,
    make_word,
    min_release_images,
    parse_bits,
    submessages,
    text_to_bits,
    worst_case_images,
)
from watermark.verify import Verdict, verdict_from_scores

log = logging.getLogger(__name__)

MANIFEST_NAME = "watermark-manifest.json"
KEY_ENV = "PROTECT_WATERMARK_KEY"


@dataclass
class WatermarkSettings:
    """Everything a verifier needs besides the key (written to the manifest)."""

    message_bits: int
    tau: float = 0.8
    backend: str = "dwtdct"
    strength: float | None = None

    def layout(self) -> Layout:
        word = self.message_bits + CRC_BITS
        return choose_layout(word, self.tau) if self.tau > 0 else baseline_layout(word)

    def resolved_strength(self, backend: WatermarkBackend) -> float:
        """The strength to use, checked against the backend's range (one clear line otherwise)."""
        return check_strength(backend, backend.default_strength if self.strength is None else self.strength)


def message_to_bits(message: str) -> np.ndarray:
    """Text, or a bit string written as 'bits:0101...'."""
    return parse_bits(message[5:]) if message.startswith("bits:") else text_to_bits(message)


def resolve_key(key: str | None = None, key_file: str | Path | None = None) -> bytes:
    """The key from --key, --key-file or $PROTECT_WATERMARK_KEY (exactly one source)."""
    given = [k for k in (key, key_file) if k is not None]
    if len(given) > 1:
        raise ConfigError("give the key once: --key or --key-file, not both")
    if key_file is not None:
        try:
            raw = Path(key_file).read_bytes().strip()
        except OSError as e:
            raise ConfigError(f"cannot read --key-file {key_file}: {e.strerror}") from e
    else:
        raw = (key if key is not None else os.environ.get(KEY_ENV, "")).encode()
    if not raw:
        raise ConfigError(f"no key: pass --key, --key-file or set {KEY_ENV}")
    return raw


def message_fingerprint(key: bytes, message_bits: np.ndarray) -> str:
    """HMAC-SHA256(key, message), 16 hex digits: lets `--resume` notice a changed message or key without
    writing either (the manifest and progress file are not secret)."""
    bits = np.asarray(message_bits, dtype=np.uint8)
    data = b"protect-watermark/run\x00" + len(bits).to_bytes(4, "big") + np.packbits(bits).tobytes()
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:16]


def markable_files(
    src: Path, backend: WatermarkBackend, payload_bits: int, dst: Path, fmt: str
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The source images that can carry the payload and be written to `dst` as `fmt`, and (file, reason) for
    the rest.

    Decided before combinations are assigned: a file skipped after assignment would keep its combination
    (and maybe the only copy of a chunk) out of the release while the manifest counted it.
    """
    files = require_images(src, exclude=(dst,))
    outputs = plan_outputs(dst, [relative(p, src) for p in files], fmt)
    good, bad = [], []
    for path in files:
        reason = overlong_output(outputs[relative(path, src)])
        if reason:
            bad.append((path, reason))
            continue
        try:
            check_fits(backend, load_image(path, root=src).pixels, payload_bits)
        except ProtectError as e:
            bad.append((path, str(e)))
        else:
            good.append(path)
    return good, bad


def check_release_size(layout: Layout, n_images: int, unusable: list[tuple[Path, str]]) -> None:
    """Refuse a release that can never give the message back: it must hold every chunk at least once."""
    need = min_release_images(layout)
    if n_images >= need:
        return
    why = f"; {len(unusable)} files cannot be marked, e.g. {unusable[0][1]}" if unusable else ""
    raise ConfigError(
        f"{n_images} markable images cannot carry all {layout.n_chunks} chunks of this layout (--tau "
        f"{layout.tau:g}): at least {need} are needed; add images or lower --tau{why}"
    )


def coverage_table(layout: Layout, n_images: int) -> dict[str, Any]:
    """How many leaked images recover the message (coverage only, error-free extraction assumed)."""
    return {
        "worst_case_images": worst_case_images(layout, n_images),
        "random_images_for_95pct": images_needed(layout, 0.95, n_images) if n_images else None,
        "random_images_for_99pct": images_needed(layout, 0.99, n_images) if n_images else None,
        "coverage_probability": {
            str(m): round(coverage_probability(layout, m, n_images), 4)
            for m in (5, 10, 20, 50)
            if m <= n_images
        },
    }


def embed_arrays(
    images: list[np.ndarray] | np.ndarray,
    message_bits: np.ndarray,
    key: bytes,
    *,
    settings: WatermarkSettings,
    backend: WatermarkBackend | None = None,
    positions: np.ndarray | None = None,
    n_total: int | None = None,
) -> list[np.ndarray]:
    """Mark uint8 (H, W, C) images; image i gets the combination of release position `positions[i]`."""
    backend = backend or create_backend(settings.backend)
    layout = settings.layout()
    subs = submessages(make_word(message_bits), layout, key)
    n = len(images) if n_total is None else n_total
    combos = assign(n, layout, key)
    pos = np.arange(len(images)) if positions is None else positions
    strength = settings.resolved_strength(backend)
    return [backend.embed(img, subs[combos[p]], strength) for img, p in zip(images, pos, strict=True)]


def embed_folder(
    src: str | Path,
    dst: str | Path,
    *,
    message: str,
    key: bytes,
    tau: float = 0.8,
    backend: str = "dwtdct",
    strength: float | None = None,
    options: WriteOptions | None = None,
    self_check: bool = True,
) -> CopyJob:
    """Write watermarked copies of a folder or `.npz`; the returned job's `finish()` writes
    `watermark-manifest.json` (settings, coverage, per-image quality; never the key) and gives the exit status.
    With `self_check`, the release is then verified as written (`_self_check`: every marked file is read
    back once more).

    Everything that can make the release unusable (strength, payload, too few markable images) is refused
    before anything is written.
    """
    bits = message_to_bits(message)
    settings = WatermarkSettings(message_bits=len(bits), tau=tau, backend=backend, strength=strength)
    wm = create_backend(backend)
    layout = settings.layout()
    resolved = settings.resolved_strength(wm)
    check_payload(wm, layout.sub_bits)
    source = Path(src)
    data = load_npz(source) if source.is_file() and source.suffix == ".npz" else None
    if data is not None:
        files, unusable = [], []
        for img in data.x[:1]:  # one shape for the whole array
            check_fits(wm, img, layout.sub_bits)
        n = len(data.x)
    else:
        fmt = (options or WriteOptions()).fmt
        files, unusable = markable_files(source, wm, layout.sub_bits, Path(dst), fmt)
        n = len(files)
    check_release_size(layout, n, unusable)
    options = options or WriteOptions()
    options.report_name = MANIFEST_NAME
    job = CopyJob(source, Path(dst), settings={}, options=options)
    with job.released_on_error():
        job.settings = {
            **asdict(settings),
            "strength": resolved,
            "layout": layout.summary(),
            "images": n,
            "coverage": coverage_table(layout, n),
            "message_fingerprint": message_fingerprint(key, bits),
            "key": "not stored",
        }
        if data is not None:
            job.write_dataset(
                data, np.stack(embed_arrays(list(data.x), bits, key, settings=settings, backend=wm))
            )
        else:
            _mark_files(job, files, unusable, bits, key, settings, wm)
        if self_check:
            _self_check(job, key, message, settings)
        return job


def _mark_files(
    job: CopyJob,
    files: list[Path],
    unusable: list[tuple[Path, str]],
    bits: np.ndarray,
    key: bytes,
    settings: WatermarkSettings,
    backend: WatermarkBackend,
) -> None:
    """Mark each markable file of a folder with the combination of its position among `files`."""
    for path, reason in unusable:
        job.skip(path, reason)
    index = {str(p): i for i, p in enumerate(files)}
    for path in job.pending():
        if str(path) not in index:  # already recorded as skipped
            continue
        picture = job.load(path)
        if picture is None:  # changed since it was checked: recorded as skipped
            continue
        out = embed_arrays(
            [picture.pixels],
            bits,
            key,
            settings=settings,
            backend=backend,
            positions=np.array([index[str(path)]]),
            n_total=len(files),
        )[0]
        job.write(picture, out)


def _self_check(job: CopyJob, key: bytes, message: str, settings: WatermarkSettings) -> None:
    """Verify the release as written (read back from disk, files left by earlier runs included) and record the
    verdict in the manifest: a release that its owner's own `verify` cannot read (too weak a strength for these
    images, a lossy `--format`, another message's files beside it) is said at once, not after a leak."""
    if not job.rows:
        return
    try:
        verdict = verify_arrays(read_suspect(job.dst), key, settings=settings, message=message)
    except ProtectError as e:  # the marked files are written: a failed check must not lose their manifest
        job.settings["self_check"] = {"verdict": "error", "reason": str(e)}
        log.warning("self-check: could not verify %s as written: %s", job.dst, e)
        return
    job.settings["self_check"] = {
        k: v for k, v in verdict.to_dict().items() if k in ("verdict", "p_value", "bit_accuracy", "reason")
    }
    if verdict.verdict != "match":
        log.warning(
            "self-check: verify on %s says %s (%s); this release may not prove ownership: raise --strength, "
            "choose another --backend or a lossless --format, and remove files of earlier runs",
            job.dst,
            verdict.verdict,
            verdict.reason,
        )


def verify_arrays(
    images: Iterable[np.ndarray],
    key: bytes,
    *,
    settings: WatermarkSettings,
    message: str | None = None,
    backend: WatermarkBackend | None = None,
    **kwargs: Any,
) -> Verdict:
    """Extract every image once, then decode and decide (`watermark.verify`). `images` is read once, so an
    iterator (`read_suspect`) keeps only one image in memory at a time."""
    backend = backend or create_backend(settings.backend)
    layout = settings.layout()
    strength = settings.resolved_strength(backend)
    scores, reasons, n_read = [], [], 0
    for img in images:
        n_read += 1
        try:
            scores.append(backend.extract(img, layout.sub_bits, strength))
        except ConfigError as e:
            reasons.append(str(e))
    if not scores:
        raise ConfigError(reasons[0] if reasons else "no images to verify")
    claimed = None
    if message is not None:
        bits = message_to_bits(message)
        if len(bits) != settings.message_bits:
            raise ConfigError(
                f"--message has {len(bits)} bits but the release carries {settings.message_bits}"
            )
        claimed = make_word(bits)
    return verdict_from_scores(
        np.stack(scores), layout, key, claimed_word=claimed, images_read=n_read, **kwargs
    )


def read_suspect(suspect: str | Path) -> Iterator[np.ndarray]:
    """Pixels of every readable image in a folder, one file or an `.npz`, one at a time (unreadable files are
    passed over; none readable is an error that names why, raised when the listing is exhausted)."""
    path = Path(suspect)
    if not path.exists():
        raise ConfigError(f"{suspect} does not exist")
    if path.is_file() and path.suffix == ".npz":
        yield from load_npz(path).x
        return
    files = [path] if path.is_file() else find_images(path)
    reasons, n = [], 0
    for f in files:
        try:
            pixels = load_image(f).pixels
        except ProtectError as e:
            reasons.append(str(e))
            continue
        n += 1
        yield pixels
    if not n:
        why = f" ({len(reasons)} unreadable, e.g. {reasons[0]})" if reasons else ""
        raise ConfigError(f"no readable images in {suspect}{why}")


def read_manifest(path: str | Path) -> WatermarkSettings:
    try:
        s = json.loads(Path(path).read_text(encoding="utf-8"))["settings"]
        return WatermarkSettings(
            message_bits=int(s["message_bits"]),
            tau=float(s["tau"]),
            backend=s["backend"],
            strength=s["strength"],
        )
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise ConfigError(f"{path} is not a readable {MANIFEST_NAME}: {e}") from e


def verify(
    suspect: str | Path,
    key: bytes,
    *,
    message: str | None = None,
    settings: WatermarkSettings | None = None,
    **kwargs: Any,
) -> Verdict:
    """Verify a folder, image or `.npz`; without `settings` the message length comes from `message`."""
    if settings is None:
        if message is None:
            raise ConfigError("verify needs the message length: pass --message, --message-bits or --manifest")
        settings = WatermarkSettings(message_bits=len(message_to_bits(message)))
    return verify_arrays(read_suspect(suspect), key, settings=settings, message=message, **kwargs)
