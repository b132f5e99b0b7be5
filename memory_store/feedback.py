"""Ranking feedback in its own database file, so it can be wiped on its own (as SuperLocalMemory's
learning.db).

Each recall logs which memories were served, at which rank, to which agent, under a salted hash of the query
(the raw query is never kept). `protect memory stats` reports how often memories are served; `forget` deletes
the rows of erased memories, and `wipe()` removes the whole file with its WAL.

Feedback is best effort: a recall still answers when this file is locked or damaged (the rows stay buffered
and a warning is logged), while the commands that read or erase feedback report the file in one line.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from memory_store import text as T
from memory_store.db import _is_locked, _retry, compact, create_private, setdefault_meta
from protect.errors import IntegrityError, ProtectError

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS recalls (id INTEGER PRIMARY KEY, memory_id INTEGER NOT NULL, query_hash "
    "TEXT NOT NULL,"
    " agent_id TEXT NOT NULL, rank INTEGER NOT NULL, created_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS recalls_memory ON recalls (memory_id)",
)
_INSERT = "INSERT INTO recalls (memory_id, query_hash, agent_id, rank, created_at) VALUES (?, ?, ?, ?, ?)"
_MAX_PENDING = 10_000  # rows kept buffered while the file cannot be written; older ones are dropped (logged)
_RECALL_WAIT_S = 1.0  # a search waits at most this long for the feedback lock


class FeedbackLog:
    """Recall log beside the main database (`<db>.feedback.db`); `None` path keeps it in memory.

    `existing(ids)` returns which of `ids` are still memories: each flush writes rows only for those, checked
    inside the feedback write transaction, so a row buffered here for a memory another process erased is
    never written back (that process deletes feedback rows after its erasure commits, under the same lock).
    `owner()` is the main database's id. The first database to open a feedback file claims it; another database
    whose name maps to the same file (`notes.db` and `notes.sqlite` both to `notes.feedback.db`) uses `fallback`
    instead. So one file only ever holds one database's rows, which is what makes the sweep of rows of memories
    erased while the file was locked (their ids, checked with `existing`) safe.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        busy_timeout: float = 10.0,
        existing: Callable[[set[int]], set[int]] | None = None,
        owner: Callable[[], str] | None = None,
        fallback: Path | None = None,
    ) -> None:
        self.path = path
        self.fallback = fallback
        self.busy_timeout = busy_timeout
        self.existing = existing
        self.owner = owner
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[object, ...]] = []
        self._salt: str | None = None
        self._swept = False  # orphan rows (of memories erased while this file was locked) removed once

    def _error(self, e: sqlite3.DatabaseError) -> IntegrityError:
        """One line naming this file; a damaged one is only ranking feedback, so `wipe-feedback` rebuilds it."""
        if _is_locked(e):
            return IntegrityError(
                f"feedback database {self.path} is locked by another process ({e}); try again when it is free"
            )
        if "full" in str(e).lower() or "disk i/o" in str(e).lower():
            return IntegrityError(
                f"feedback database {self.path}: cannot write ({e}); free disk space and try again"
            )
        return IntegrityError(
            f"feedback database {self.path} is unusable ({e}); it holds only ranking feedback: "
            "`protect memory wipe-feedback` deletes and rebuilds it"
        )

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path:
                create_private(self.path)
            conn = sqlite3.connect(
                str(self.path) if self.path else ":memory:",
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.execute("PRAGMA secure_delete = ON")
                conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: no fsync per recall, still consistent
                if self.path:
                    _retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone(), self.busy_timeout)
                for stmt in _SCHEMA:
                    _retry(lambda s=stmt: conn.execute(s), self.busy_timeout)
                _retry(
                    lambda: conn.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('salt', ?)", (secrets.token_hex(16),)
                    ),
                    self.busy_timeout,
                )
                claimed = self._claim(conn)
            except sqlite3.DatabaseError as e:
                conn.close()
                raise self._error(e) from e
            except BaseException:
                conn.close()
                raise
            if not claimed and self.fallback is not None:
                conn.close()
                log.info("%s belongs to another database; using %s", self.path, self.fallback)
                self.path, self.fallback = self.fallback, None
                return self.conn
            self._conn = conn
        return self._conn

    def _claim(self, conn: sqlite3.Connection) -> bool:
        """Whether this file is (now) the main database's own: the first `owner()` to open it claims it."""
        if self.owner is None:
            return True
        mine = self.owner()
        return setdefault_meta(conn, "owner", mine, busy_timeout=self.busy_timeout) == mine

    def _query_hash(self, query: str) -> str:
        if self._salt is None:
            try:
                (self._salt,) = self.conn.execute("SELECT value FROM meta WHERE key='salt'").fetchone()
            except sqlite3.DatabaseError as e:
                raise self._error(e) from e
        text = T.drop_surrogates(T.normalize(query).lower())
        return hashlib.sha256((self._salt + text).encode()).hexdigest()[:32]

    def record(self, query: str, agent_id: str, memory_ids: list[int]) -> None:
        """Log one recall (best effort: a failure is logged, never raised, so the search still answers).

        Rows are buffered and written 64 at a time (one commit instead of one per search); every read,
        `forget`, `wipe` and `close` flushes first, and no flush writes rows of erased memories."""
        if not memory_ids:
            return
        try:
            qh = self._query_hash(query)
            now = time.time()
            self._pending += [(m, qh, agent_id, r, now) for r, m in enumerate(memory_ids, 1)]
            if len(self._pending) >= 64:
                self.flush(timeout=min(_RECALL_WAIT_S, self.busy_timeout))
        except ProtectError as e:
            dropped = max(len(self._pending) - _MAX_PENDING, 0)
            del self._pending[:dropped]
            log.warning(
                "ranking feedback not recorded yet (%d rows buffered, %d dropped): %s",
                len(self._pending),
                dropped,
                e,
            )

    def flush(self, *, timeout: float | None = None) -> None:
        """Write the buffered rows of memories that still exist; on failure they stay buffered and
        `IntegrityError` names the file."""
        rows = self._pending
        if not rows:
            return
        conn = self.conn
        try:
            conn.execute("PRAGMA busy_timeout = 0")  # poll the lock here, for at most `timeout`
            _retry(lambda: self._write(rows), self.busy_timeout if timeout is None else timeout)
        except sqlite3.DatabaseError as e:
            raise self._error(e) from e
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        self._pending = self._pending[len(rows) :]

    def _write(self, rows: list[tuple[object, ...]]) -> None:
        """One transaction: take the write lock, drop rows of memories erased meanwhile, insert the rest; the
        first write of this process also deletes the rows of memories erased while this file was locked."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self.existing is not None:
                alive = self.existing({int(r[0]) for r in rows})  # type: ignore[call-overload]
                rows = [r for r in rows if r[0] in alive]
            if not self._swept:
                self._delete(self._orphans())
            conn.executemany(_INSERT, rows)
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back itself (a full disk): keep its error
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._swept = True

    def _orphans(self) -> list[int]:
        """Memory ids with feedback rows but no memory: erased while this file was locked or damaged."""
        if self.existing is None:
            return []
        ids = {int(r[0]) for r in self.conn.execute("SELECT DISTINCT memory_id FROM recalls")}
        return sorted(ids - self.existing(ids)) if ids else []

    def _delete(self, memory_ids: list[int]) -> int:
        removed = 0
        for k in range(0, len(memory_ids), 500):
            chunk = memory_ids[k : k + 500]
            sql = f"DELETE FROM recalls WHERE memory_id IN ({','.join('?' * len(chunk))})"
            removed += self.conn.execute(sql, chunk).rowcount
        return removed

    def served(self, memory_ids: list[int] | None = None) -> int:
        self.flush()
        try:
            if memory_ids is None:
                return int(self.conn.execute("SELECT count(*) FROM recalls").fetchone()[0])
            marks = ",".join("?" * len(memory_ids))
            sql = f"SELECT count(*) FROM recalls WHERE memory_id IN ({marks})"
            return int(self.conn.execute(sql, memory_ids).fetchone()[0])
        except sqlite3.DatabaseError as e:
            raise self._error(e) from e

    def forget(self, memory_ids: list[int]) -> int:
        """Delete the feedback rows of erased memories (buffered ones too), and those of memories an earlier
        erasure could not reach because this file was locked; returns how many rows of `memory_ids` were stored."""
        gone = set(memory_ids)
        self._pending = [r for r in self._pending if r[0] not in gone]
        try:
            removed = _retry(lambda: self._delete(sorted(gone)), self.busy_timeout)
        except sqlite3.DatabaseError as e:
            raise self._error(e) from e
        try:  # best effort: these memories are gone already, a later write sweeps again
            _retry(lambda: self._delete(self._orphans()), self.busy_timeout)
            self._swept = True
        except (sqlite3.DatabaseError, ProtectError) as e:
            log.warning("feedback rows of earlier erasures not swept yet: %s", e)
        return removed

    def compact(self) -> bool:
        if not self.path:
            return True
        try:
            return compact(self.conn)
        except sqlite3.DatabaseError as e:
            raise self._error(e) from e

    def wipe(self) -> int:
        """Delete every feedback row and the file itself (with -wal/-shm); returns rows removed.

        A damaged file is deleted too (its row count unknown: 0 is returned); a locked one is left alone."""
        try:
            n = self.served()
        except IntegrityError as e:
            if isinstance(e.__cause__, sqlite3.DatabaseError) and _is_locked(e.__cause__):
                raise
            log.warning("%s; deleting it", e)
            n = 0
        self._pending = []
        self.close()
        if self.path:
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        return n

    def close(self) -> None:
        """Flush (best effort: unwritable rows are reported in a warning) and close."""
        try:
            self.flush()
        except ProtectError as e:
            log.warning("%d ranking-feedback rows were not written: %s", len(self._pending), e)
        self._pending = []
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._salt = None
