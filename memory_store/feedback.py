"""Ranking feedback in its own database file, so it can be wiped on its own (as SuperLocalMemory's
learning.db).

Each recall logs which memories were served, at which rank, to which agent, under a salted hash of the query
(the raw query is never kept). `protect memory stats` reports how often memories are served; `forget` deletes
the rows of erased memories, and `wipe()` removes the whole file with its WAL.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from pathlib import Path

from memory_store import text as T
from memory_store.db import _retry, compact, create_private

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS recalls (id INTEGER PRIMARY KEY, memory_id INTEGER NOT NULL, query_hash "
    "TEXT NOT NULL,"
    " agent_id TEXT NOT NULL, rank INTEGER NOT NULL, created_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS recalls_memory ON recalls (memory_id)",
)


class FeedbackLog:
    """Recall log beside the main database (`<db>.feedback.db`); `None` path keeps it in memory."""

    def __init__(self, path: Path | None, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[object, ...]] = []
        self._salt: str | None = None

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
            self._conn = conn
        return self._conn

    def record(self, query: str, agent_id: str, memory_ids: list[int]) -> None:
        """Log one recall. Rows are buffered and written 64 at a time (one commit instead of one per search);
        every read, `forget`, `wipe` and `close` flushes first, so nothing erased can be written back later."""
        if not memory_ids:
            return
        if self._salt is None:
            (self._salt,) = self.conn.execute("SELECT value FROM meta WHERE key='salt'").fetchone()
        qh = hashlib.sha256((self._salt + T.normalize(query).lower()).encode()).hexdigest()[:32]
        now = time.time()
        self._pending += [(m, qh, agent_id, r, now) for r, m in enumerate(memory_ids, 1)]
        if len(self._pending) >= 64:
            self.flush()

    def flush(self) -> None:
        rows, self._pending = self._pending, []
        if rows:
            sql = "INSERT INTO recalls (memory_id, query_hash, agent_id, rank, created_at) VALUES (?, ?, ?, ?, ?)"
            _retry(lambda: self.conn.executemany(sql, rows), self.busy_timeout)

    def served(self, memory_ids: list[int] | None = None) -> int:
        self.flush()
        if memory_ids is None:
            return int(self.conn.execute("SELECT count(*) FROM recalls").fetchone()[0])
        marks = ",".join("?" * len(memory_ids))
        return int(
            self.conn.execute(
                f"SELECT count(*) FROM recalls WHERE memory_id IN ({marks})", memory_ids
            ).fetchone()[0]
        )

    def forget(self, memory_ids: list[int]) -> int:
        """Delete the feedback rows of erased memories; returns how many."""
        self.flush()
        removed = 0
        for k in range(0, len(memory_ids), 500):
            chunk = memory_ids[k : k + 500]
            marks = ",".join("?" * len(chunk))
            cur = _retry(
                lambda c=chunk, m=marks: self.conn.execute(
                    f"DELETE FROM recalls WHERE memory_id IN ({m})", c
                ),
                self.busy_timeout,
            )
            removed += cur.rowcount
        return removed

    def compact(self) -> bool:
        return compact(self.conn) if self.path else True

    def wipe(self) -> int:
        """Delete every feedback row and the file itself (with -wal/-shm); returns rows removed."""
        n = self.served()
        self.close()
        if self.path:
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        return n

    def close(self) -> None:
        self.flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._salt = None
