"""The shared "write protected copies" job behind `protect images`, `protect t2ue apply` and `protect watermark embed`.

It owns everything that must behave the same for every method: reading a folder or an `.npz`, mirroring paths into
the destination, atomic writes, per-image quality rows, skipped files, `--resume`, and the JSON/HTML reports.
The methods only turn original pixels into protected pixels.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protect.errors import ConfigError, ProtectError
from protect.imageio import (
    LOSSY_FORMATS,
    ArrayDataset,
    Picture,
    check_destination,
    fit_format,
    is_hidden,
    load_image,
    load_npz,
    output_path,
    overlong_output,
    plan_outputs,
    refuse_links_into,
    relative,
    require_images,
    save_image,
    save_npz,
)
from protect.metrics import perturbation_kept, quality_row
from protect.paths import atomic_write_text, is_temp_leftover, remove_temp_leftovers, writable
from protect.report import HTML_NAME, REPORT_NAME, html_row, jsonable, write_html_report, write_json_report

log = logging.getLogger(__name__)

PROGRESS_NAME = ".protect-progress.jsonl"
HTML_ROWS = 48
UNCHECKED_SETTINGS = ("device", "run", "runs")  # where it ran and what it found, not what was asked for


@dataclass
class WriteOptions:
    """How protected copies are written."""

    fmt: str = "png"
    quality: int = 95
    keep_exif: bool = False
    resume: bool = False
    report_name: str = REPORT_NAME


@dataclass
class CopyJob:
    """One run from a source (folder or `.npz`) to a destination folder or `.npz`.

    Example:
        job = CopyJob("photos", "protected", settings={"method": "beo"})
        for path in job.pending():
            picture = job.load(path)
            if picture is not None:
                job.write(picture, protect_pixels(picture.pixels))
        job.finish()
    """

    src: Path
    dst: Path
    settings: dict[str, Any] = field(default_factory=dict)
    options: WriteOptions = field(default_factory=WriteOptions)
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    _html_rows: list[str] = field(default_factory=list)  # the first HTML_ROWS copies' rows of report.html
    _recorded: dict[str, Any] | None = None
    _outputs: dict[str, Path] | None = None
    _lock_key: str | None = None
    _sweep: bool = False  # remove a killed run's temporary files once the outputs are planned
    _made_reports: bool = False  # this job created the report folder
    _replacing: bool = False  # this run has started writing outputs (the earlier reports are gone)
    _parts: list[dict[str, Any]] = field(default_factory=list)  # `record_run` entries of the interrupted run
    _skipped_sources: set[str] = field(default_factory=set)  # `skipped`'s sources: a skip is one lookup
    _sources: list[Path] | None = None  # `sources()`

    def __post_init__(self) -> None:
        self.src, self.dst = Path(self.src), Path(self.dst)
        self._skipped_sources = {s["source"] for s in self.skipped}
        check_destination(self.src, self.dst)
        if self.is_npz and self.dst.suffix != ".npz":
            raise ConfigError(f"an .npz source needs an .npz --out, got {self.dst}")
        if not self.is_npz and self.dst.suffix == ".npz":
            raise ConfigError(f"a folder source needs a folder --out, got {self.dst}")
        src, reports = self.src.resolve(), self.report_dir.resolve()
        if reports == src or src in reports.parents:
            raise ConfigError(
                f"the reports would go to {self.report_dir}, inside the source; choose another --out"
            )
        stale = [n for n in (REPORT_NAME, HTML_NAME, PROGRESS_NAME) if (self.dst / n).is_file()]
        if not self.is_npz and stale:
            log.warning(
                "%s holds reports of an earlier version (%s): report.html shows the originals; delete them before "
                "publishing (reports now go to %s)",
                self.dst,
                ", ".join(stale),
                self.report_dir,
            )
        if not self.is_npz and self.src.is_dir():
            self.sources()  # an empty folder is refused before anything is made
        writable(self.dst.parent if self.is_npz else self.dst)  # before any work, not after the first image
        self._made_reports = not self.report_dir.exists()
        try:
            self.report_dir.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            if not self.options.resume:
                (self.report_dir / PROGRESS_NAME).unlink(missing_ok=True)
            if self.options.resume:
                self._recorded, self.rows, self._parts = self._read_progress()
        except OSError as e:
            self._release()  # a refused or failed start must not keep the folder locked
            raise ConfigError(f"cannot write to {self.report_dir}: {e.strerror or e}") from e
        except BaseException:
            self._release()
            raise

    def _take_lock(self) -> None:
        """Lock the report folder (named after the real output, so every spelling of `--out` meets the same lock);
        the first job of this process to hold it may clear a killed run's temporary files."""
        self._lock_key = _lock(self.report_dir, self.dst)
        if self._lock_key is None:
            return  # without fcntl there is no lock, and nothing is swept
        self._sweep = _HELD[self._lock_key][1] == 1
        if self._sweep:
            mine = [self.report_dir / n for n in (self.options.report_name, HTML_NAME, PROGRESS_NAME)]
            self._remove_leftovers(mine + ([self.dst] if self.is_npz else []))

    @contextlib.contextmanager
    def released_on_error(self, *, reports: bool = False) -> Iterator[CopyJob]:
        """Around the work on a job: an error releases the folder lock before it propagates (with `reports`, after
        writing the reports of the copies already saved), so a long-lived process can write there again. The
        files skipped so far are logged as warnings: no summary will list them, and they may be why it failed."""
        try:
            yield self
        except BaseException:
            for s in self.skipped:
                log.warning("skipped %s: %s", s["source"], s["reason"])
            if reports and self.rows:
                self.finish()
            else:
                self._release()
                self._drop_unused_reports()
            raise

    def _release(self) -> None:
        if self._lock_key is not None:
            _unlock(self._lock_key)  # releases the folder for the next run
            self._lock_key = None

    def _drop_unused_reports(self) -> None:
        """A run that failed or was refused before writing any copy leaves nothing behind: the report folder it
        made goes again, when it holds nothing but this run's progress file and no other job here uses it."""
        if not self._made_reports or self.rows or str(self.report_dir.resolve()) in _HELD:
            return
        with contextlib.suppress(OSError):
            (self.report_dir / PROGRESS_NAME).unlink(missing_ok=True)
            self.report_dir.rmdir()  # refuses a folder that holds anything else

    def _remove_leftovers(self, dests: list[Path]) -> None:
        """Temporary files a killed earlier run left for these outputs go first: they must not be published."""
        removed = remove_temp_leftovers(dests)
        if removed:
            log.info("removed %d temporary file(s) left by an interrupted run", len(removed))

    @property
    def is_npz(self) -> bool:
        return self.src.is_file() and self.src.suffix == ".npz"

    @property
    def report_dir(self) -> Path:
        """Reports go beside the output, in `<name>-report/` (`<stem>-report/` for an `.npz`), never into it.

        The output is what gets published, and the reports are for the owner alone: `report.html` holds thumbnails
        of the originals (at CIFAR size, the originals themselves), and the JSON rows and the progress file hold
        local paths. Inside the release they would hand out exactly what the protection withholds.
        """
        # a symlinked `--out` reports beside its target, where the files go (and where its lock is)
        odd = self.dst.is_symlink() or self.dst.name in ("", ".", "..")
        base = self.dst.resolve() if odd else self.dst
        return base.with_name((base.stem if self.is_npz else base.name) + "-report")

    # -- folders -----------------------------------------------------------------------------------------
    def sources(self) -> list[Path]:
        """SRC's image files (`require_images`), listed once per job; links into the output are not followed."""
        if self._sources is None:
            self._sources = require_images(self.src, exclude=(self.dst, self.report_dir))
        return self._sources

    def pending(self) -> list[Path]:
        """Source files still to do (all of them unless resuming)."""
        if self.is_npz:
            raise ConfigError("pending() is for folder sources; use load_dataset() for .npz")
        if not self.src.is_dir():
            raise ConfigError(f"{self.src} is neither a folder nor an .npz file")
        files = self.sources()
        plan = self._plan(files)
        if self.options.resume:
            self._check_resume()
            self.rows = [
                r | {"output": str(plan[r["file"]])}  # this run's spelling of the path (another cwd, say)
                for r in self.rows
                if r.get("file") in plan and plan[r["file"]].exists()
            ]
        done = {r["file"] for r in self.rows}
        todo = []
        for p in files:
            rel = relative(p, self.src).as_posix()
            if rel in done:
                continue
            reason = overlong_output(plan[rel])
            if reason:
                self.skip(p, reason)
                continue
            todo.append(p)
        lines = [json.dumps({"run": self._run_key()}, default=jsonable)]
        lines += [json.dumps({"part": p}, default=jsonable) for p in self._parts]
        if self._parts:
            self.settings["runs"] = list(self._parts)  # the interrupted run's parts, then this run's
        atomic_write_text(
            self.report_dir / PROGRESS_NAME, "\n".join(lines + [json.dumps(r) for r in self.rows]) + "\n"
        )
        if self.rows:
            log.info("resuming: %d done, %d to go", len(self.rows), len(todo))
        return todo

    def load(self, path: Path) -> Picture | None:
        """Decode one source file, or record it as skipped (with the reason) and return None.

        It is fitted to the output format here (`fit_format`: alpha flattened for JPEG, grey as RGB for WebP),
        before protecting, so the protection is computed on (and the report measures) what the file can hold.
        """
        try:
            picture = load_image(path, root=self.src, keep_exif=self.options.keep_exif)
        except ProtectError as e:
            self.skip(path, str(e))
            return None
        return fit_format(picture, self.options.fmt)

    def skip(self, path: Path | str, reason: str) -> None:
        """Record `path` as left out, once (a file can fail two checks). INFO, not WARNING: the commands list the
        skips in their summary, the report holds them for API callers, and a failing run warns of them."""
        if str(path) in self._skipped_sources:
            return
        self._skipped_sources.add(str(path))
        log.info("skipped %s: %s", path, reason)
        self.skipped.append({"source": str(path), "reason": reason})

    def write(self, picture: Picture, protected: np.ndarray, **extra: Any) -> dict[str, Any]:
        """Save one protected copy atomically, measure it as saved, and record progress."""
        out = self._plan().get(picture.rel.as_posix()) or output_path(self.dst, picture.rel, self.options.fmt)
        if not self._replacing:
            # an earlier run's reports describe files this run starts to replace: a kill before `finish` must not
            # leave them beside a half-new release (`finish` writes this run's, from the progress file on --resume)
            for name in (self.options.report_name, HTML_NAME):
                (self.report_dir / name).unlink(missing_ok=True)
            self._replacing = True
        saved = save_image(picture.with_pixels(protected), out, self.options.fmt, self.options.quality)
        row = {
            "source": picture.source,
            "file": picture.rel.as_posix(),
            "output": str(out),
            "width": picture.width,
            "height": picture.height,
            **quality_row(picture.pixels, saved),
            **({"note": picture.meta["note"]} if "note" in picture.meta else {}),
            **extra,
        }
        if self.options.fmt in LOSSY_FORMATS:
            row["perturbation_kept"] = round(perturbation_kept(picture.pixels, protected, saved), 4)
        self._record(row, picture.pixels, saved)
        return row

    # -- arrays ------------------------------------------------------------------------------------------
    def load_dataset(self) -> ArrayDataset:
        return load_npz(self.src)

    def write_dataset(self, original: ArrayDataset, protected: np.ndarray) -> None:
        """Save the protected `.npz` (labels and extra arrays carried over) and one quality row per image."""
        if protected.shape != original.x.shape or protected.dtype != np.uint8:
            raise ValueError(f"expected uint8 {original.x.shape}, got {protected.dtype} {protected.shape}")
        save_npz(self.dst, ArrayDataset(x=protected, y=original.y, extras=original.extras))
        self.rows = []
        for i, (a, b) in enumerate(zip(original.x, protected, strict=True)):
            row = {
                "source": f"{self.src}[{i}]",
                "output": f"{self.dst}[{i}]",
                "width": int(a.shape[1]),
                "height": int(a.shape[0]),
                **quality_row(a, b),
            }
            self._record(row, a, b, progress=False)

    # -- reports -----------------------------------------------------------------------------------------
    def finish(self) -> int:
        """Write the reports; exit status 0 if anything was protected, 2 if nothing could be."""
        foreign = self._foreign_files()
        if foreign:
            log.warning(
                "%s holds %d file(s) this run did not write (e.g. %s), from an earlier run or put there by hand: "
                "they are no copies of this run's sources; check them before publishing the folder",
                self.dst,
                len(foreign),
                foreign[0],
            )
        write_json_report(
            self.report_dir,
            settings=self.settings,
            rows=self.rows,
            skipped=self.skipped,
            name=self.options.report_name,
            foreign=foreign,
        )
        write_html_report(self.report_dir, self._html_rows, title=f"protect: {self.src} -> {self.dst}")
        self._release()
        return 0 if self.rows else 2

    def _foreign_files(self) -> list[str]:
        """Files under a folder output that are no output of this run (resumed rows included): a second run
        with fewer sources, another `--format` or another message leaves the first run's files beside its own,
        where they would be published with it (for a watermark, marked with another message). A temporary that a
        killed run left for an output this run did not plan (another `--format`) is hidden but listed too."""
        if self.is_npz or not self.dst.is_dir():
            return []
        plan = self._plan()
        ours = {os.path.realpath(plan[r["file"]]) for r in self.rows if r.get("file") in plan}
        foreign = []
        for p in sorted(self.dst.rglob("*")):
            rel = p.relative_to(self.dst)
            shown = not is_hidden(rel) or (is_temp_leftover(p) and not is_hidden(rel.parent))
            if shown and p.is_file() and os.path.realpath(p) not in ours:
                foreign.append(rel.as_posix())
        return foreign

    def record_run(self, info: dict[str, Any]) -> None:
        """Add one part of the work (an optimisation chunk's details) to the report's `runs`, and to the progress
        file, so a resumed run's report still describes the parts an interrupted run did."""
        self.settings.setdefault("runs", []).append(info)
        self._append_progress({"part": info})

    def _append_progress(self, entry: dict[str, Any]) -> None:
        with open(self.report_dir / PROGRESS_NAME, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, default=jsonable) + "\n")
            fh.flush()

    def _record(
        self, row: dict[str, Any], before: np.ndarray, after: np.ndarray, progress: bool = True
    ) -> None:
        self.rows.append(row)
        if len(self._html_rows) < HTML_ROWS:
            self._html_rows.append(html_row(row, before, after))
        if progress:
            self._append_progress(row)

    def _plan(self, files: list[Path] | None = None) -> dict[str, Path]:
        """Output path of every source file (by its path relative to SRC), collisions resolved up front; `files`
        is SRC's listing when the caller already has it."""
        if self._outputs is None:
            if files is None:
                files = self.sources() if self.src.is_dir() else []
            rels = [relative(p, self.src) for p in files]
            plan = plan_outputs(self.dst, rels, self.options.fmt)
            refuse_links_into(self.src, plan.values())
            self._outputs = {rel.as_posix(): path for rel, path in plan.items()}
            if self._sweep:
                self._remove_leftovers(list(plan.values()))
        return self._outputs

    def _run_key(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues, as JSON would read them back; a
        setting naming an existing file or folder counts by its absolute path (`x.npz` = `./x.npz` = `/abs/x.npz`)."""
        key = {k: _canonical(v) for k, v in self.settings.items() if k not in UNCHECKED_SETTINGS}
        key |= {
            "format": self.options.fmt,
            "quality": self.options.quality,
            "keep_exif": self.options.keep_exif,
        }
        return json.loads(json.dumps(key, default=jsonable))

    def _check_resume(self) -> None:
        """Refuse to mix settings: resumed rows would be reported under settings they were not made with."""
        if self._recorded is None:
            return
        now = self._run_key()
        diff = sorted(k for k in self._recorded.keys() | now.keys() if self._recorded.get(k) != now.get(k))
        if diff:
            changes = ", ".join(f"{k} {self._recorded.get(k)!r} -> {now.get(k)!r}" for k in diff)
            raise ConfigError(
                f"--resume: settings differ from the interrupted run ({changes}); use the same settings, "
                "or run without --resume to start again"
            )

    def _read_progress(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
        """The recorded run settings, finished rows (the last row per file wins) and `record_run` parts."""
        path = self.report_dir / PROGRESS_NAME
        if not path.exists():
            return None, [], []
        recorded, rows, parts = None, {}, []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that image is simply redone
                continue
            if isinstance(row, dict) and "run" in row:
                recorded = row["run"]
            elif isinstance(row, dict) and "file" in row:
                rows[row["file"]] = row
            elif isinstance(row, dict) and isinstance(row.get("part"), dict):
                parts.append(row["part"])
        return recorded, list(rows.values()), parts


_HELD: dict[str, list[int]] = {}  # locked folder -> [descriptor, jobs of this process using it]


def _lock(folder: Path, dst: Path) -> str | None:
    """An exclusive lock on the output's report folder against other processes, held until `finish` (or exit).

    Two runs into one folder would interleave their progress records, and a `--resume` could then accept files
    made with other settings. Jobs of one process share the lock. POSIX only (`fcntl`; no file is created).
    """
    try:
        import fcntl
    except ImportError:
        return None
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"another protect run is writing to {dst}; wait for it to finish or choose another --out"
        ) from None
    _HELD[key] = [fd, 1]
    return key


def _unlock(key: str) -> None:
    entry = _HELD[key]
    entry[1] -= 1
    if not entry[1]:
        os.close(entry[0])
        del _HELD[key]


def _canonical(value: Any) -> Any:
    if isinstance(value, (str, Path)) and str(value) and Path(value).exists():
        return str(Path(value).resolve())
    return value
