"""SQLite connections and schema for the memory store.

SuperLocalMemory v2.7 (Bhardwaj, arXiv 2603.02240) keeps everything in one SQLite file with WAL and a 5 s busy
timeout, but never turns `PRAGMA foreign_keys` on, so its `ON DELETE CASCADE` clauses are inert, and its
`content_hash` is unique across all profiles. Here every connection enables foreign keys, the hash is unique
per namespace, every derived table (embeddings, graph, entities, events, confirmations) cascades from
`memories`, and writes are short `BEGIN IMMEDIATE` transactions retried while another process holds the lock.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from protect.errors import ConfigError, IntegrityError
from protect.paths import writable

# 2: contextual index (`memories.context`, see memory_store.context); 3: `memories.words` (the length prior)
SCHEMA_VERSION = 3

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
    agent_id   TEXT PRIMARY KEY,
    alpha      REAL NOT NULL,
    beta       REAL NOT NULL,
    pinned     INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    first_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS memories (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace    TEXT NOT NULL,
    content      TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    tags         TEXT NOT NULL DEFAULT '[]',
    agent_id     TEXT NOT NULL REFERENCES agents(agent_id),
    session      TEXT NOT NULL DEFAULT '',
    transport    TEXT NOT NULL DEFAULT 'api',
    importance   INTEGER NOT NULL DEFAULT 5,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'quarantined')),
    flags        TEXT NOT NULL DEFAULT '[]',
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    context      TEXT NOT NULL DEFAULT '',
    words        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (namespace, content_hash)
);
CREATE INDEX IF NOT EXISTS memories_ns_created ON memories (namespace, created_at);
CREATE INDEX IF NOT EXISTS memories_agent ON memories (agent_id, created_at);
CREATE INDEX IF NOT EXISTS memories_session ON memories (namespace, session, agent_id, id);
"""
# The FTS5 index and its sync triggers. A context-only change (see memory_store.context) re-indexes the row
# without bumping `removals`: the vector index (content only) has nothing to drop.
FTS = """
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5 (
    content, tags, context, content='memories', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, content, tags, context) VALUES (new.id, new.content, new.tags, new.context);
    UPDATE meta SET value = value + 1 WHERE key = 'generation';
END;
CREATE TRIGGER IF NOT EXISTS memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, tags, context)
        VALUES ('delete', old.id, old.content, old.tags, old.context);
    UPDATE meta SET value = value + 1 WHERE key IN ('generation', 'removals');
END;
CREATE TRIGGER IF NOT EXISTS memories_au AFTER UPDATE OF content, tags, namespace ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, tags, context)
        VALUES ('delete', old.id, old.content, old.tags, old.context);
    INSERT INTO memories_fts (rowid, content, tags, context) VALUES (new.id, new.content, new.tags, new.context);
    UPDATE meta SET value = value + 1 WHERE key IN ('generation', 'removals');
END;
CREATE TRIGGER IF NOT EXISTS memories_acx AFTER UPDATE OF context ON memories
WHEN old.content = new.content AND old.tags = new.tags AND old.namespace = new.namespace BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, tags, context)
        VALUES ('delete', old.id, old.content, old.tags, old.context);
    INSERT INTO memories_fts (rowid, content, tags, context) VALUES (new.id, new.content, new.tags, new.context);
END;
"""
_DERIVED = """
CREATE TABLE IF NOT EXISTS embeddings (
    memory_id INTEGER PRIMARY KEY REFERENCES memories(id) ON DELETE CASCADE,
    model     TEXT NOT NULL,
    vector    BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS edges (
    src    INTEGER NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
    dst    INTEGER NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
    weight REAL NOT NULL,
    PRIMARY KEY (src, dst)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_dst ON edges (dst);
CREATE TABLE IF NOT EXISTS entities (
    memory_id INTEGER NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
    entity    TEXT NOT NULL,
    PRIMARY KEY (memory_id, entity)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entities_entity ON entities (entity);
CREATE TABLE IF NOT EXISTS confirmations (
    memory_id  INTEGER NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
    agent_id   TEXT NOT NULL REFERENCES agents(agent_id),
    created_at REAL NOT NULL,
    PRIMARY KEY (memory_id, agent_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY,
    memory_id  INTEGER REFERENCES memories(id) ON DELETE CASCADE,
    agent_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_memory ON events (memory_id);
CREATE INDEX IF NOT EXISTS events_agent ON events (agent_id, kind, created_at);
CREATE TABLE IF NOT EXISTS trust_signals (
    id          INTEGER PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents(agent_id),
    signal      TEXT NOT NULL,
    d_alpha     REAL NOT NULL,
    d_beta      REAL NOT NULL,
    trust_after REAL NOT NULL,
    memory_id   INTEGER REFERENCES memories(id) ON DELETE SET NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trust_signals_agent ON trust_signals (agent_id, created_at);
CREATE INDEX IF NOT EXISTS trust_signals_memory ON trust_signals (memory_id);
"""
SCHEMA = _TABLES + FTS + _DERIVED

# v1 -> v2: the context column, the session and entity indexes, and an FTS5 index with a context column
_MIGRATE_V2 = """
ALTER TABLE memories ADD COLUMN context TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS memories_session ON memories (namespace, session, agent_id, id);
CREATE INDEX IF NOT EXISTS entities_entity ON entities (entity);
DROP TRIGGER IF EXISTS memories_ai;
DROP TRIGGER IF EXISTS memories_ad;
DROP TRIGGER IF EXISTS memories_au;
DROP TABLE IF EXISTS memories_fts;
"""

# v2 -> v3: each memory's word count, read by the length prior at search time (counting there scanned the text)
_MIGRATE_V3 = "ALTER TABLE memories ADD COLUMN words INTEGER NOT NULL DEFAULT 0;"


def create_private(path: Path) -> None:
    """Create `path` empty and owner-only (0600; its folder 0700 if new) unless it exists.

    Memories are private: SQLite would create the file with the umask's mode (usually world-readable 0644), and it
    gives the -wal and -shm files the mode of the database file, so this one mode covers all three.
    """
    if not path.exists():
        writable(path.parent)  # a parent that is a file or read-only: one ConfigError, not an OSError
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def connect(path: str | Path, *, busy_timeout: float = 10.0, create: bool = True) -> sqlite3.Connection:
    """Open `path` with the store's pragmas, creating the schema if needed.

    A file that is not a SQLite database raises `IntegrityError` and is left byte-for-byte untouched.
    """
    path = str(path)
    if path != ":memory:":
        p = Path(path)
        if not p.exists() and not create:
            raise ConfigError(f"memory database {path} does not exist")
        if p.exists() and p.is_dir():
            raise ConfigError(f"memory database path {path} is a directory")
        create_private(p)
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header: fails on a non-database file
        _refuse_foreign(conn, path)  # before WAL mode, which would change the file
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA secure_delete = ON")
        if path != ":memory:":
            _retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone(), busy_timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA mmap_size = 268435456")  # reads after another process commits: no pread copies
        _ensure_schema(conn, busy_timeout)
    except IntegrityError:
        conn.close()
        raise
    except sqlite3.DatabaseError as e:
        conn.close()
        if _is_locked(e):
            raise IntegrityError(f"memory database {path} is locked by another process: {e}") from e
        # a damaged page (`.recover` helps), a full disk, no write access
        if any(k in str(e).lower() for k in ("malformed", "full", "disk i/o", "readonly")):
            raise database_error(path, e) from e
        raise IntegrityError(
            f"memory database {path} is corrupt or not a SQLite database ({e}); left untouched"
        ) from e
    return conn


def _refuse_foreign(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a database that has tables but no `memories` table (another program's, or a feedback file):
    adding our tables to it and switching it to WAL would change a file that is not ours."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    tables = {t for t in tables if not t.startswith("sqlite_")}
    if tables and "memories" not in tables:
        names = ", ".join(sorted(tables)[:5])
        raise IntegrityError(
            f"{path} is another program's SQLite database (tables: {names}); left untouched: "
            "choose another --db file"
        )


def fts5_available() -> bool:
    """Probe the linked SQLite for FTS5 (the store needs it; CPython builds normally include it)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.probe USING fts5(x)")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def _ensure_schema(conn: sqlite3.Connection, busy_timeout: float) -> None:
    row = _table_exists(conn, "meta") and conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row:
        if int(row[0]) > SCHEMA_VERSION:
            raise IntegrityError(
                f"memory database has schema {row[0]}, newer than this protect ({SCHEMA_VERSION})"
            )
        if int(row[0]) < SCHEMA_VERSION:
            _migrate(conn, busy_timeout)
        return
    if not fts5_available():
        raise IntegrityError("this Python's SQLite lacks FTS5; install a CPython built with FTS5")

    def create() -> None:
        with transaction(conn, busy_timeout=busy_timeout):
            if (
                _table_exists(conn, "meta")
                and conn.execute("SELECT 1 FROM meta WHERE key='schema'").fetchone()
            ):
                return  # another process created it while we waited
            for statement in _statements(SCHEMA):
                conn.execute(statement)
            conn.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [("schema", str(SCHEMA_VERSION)), ("generation", "0"), ("removals", "0")],
            )

    create()


def _migrate(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Bring an older database to `SCHEMA_VERSION` in one transaction (another process may have done it)."""
    from memory_store import context
    from memory_store import text as T

    with transaction(conn, busy_timeout=busy_timeout):
        version = int(conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0])
        if version >= SCHEMA_VERSION:
            return
        if version < 2:
            for statement in _statements(_MIGRATE_V2 + FTS):
                conn.execute(statement)
            conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('rebuild')")
            ids = [r[0] for r in conn.execute("SELECT id FROM memories WHERE session != '' ORDER BY id")]
            context.refresh(conn, ids)
        conn.execute(_MIGRATE_V3)
        rows = conn.execute("SELECT id, content FROM memories").fetchall()
        conn.executemany(
            "UPDATE memories SET words = ? WHERE id = ?", [(T.word_count(c), i) for i, c in rows]
        )
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))


def _statements(script: str) -> list[str]:
    """Split a script into statements (triggers contain `;`), so it runs inside our own transaction."""
    out, buf = [], ""
    for line in script.strip().splitlines():
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
        is not None
    )


def database_error(
    path: object, e: sqlite3.DatabaseError, *, what: str = "memory database"
) -> IntegrityError:
    """One clear line for a SQLite failure on `path` after it opened (a damaged page, a lock, a full disk).

    A bad page past the header only shows when a query reads it, so every store method needs this, not only
    `connect`; the message names the file and how to get the data back.
    """
    if _is_locked(e):
        return IntegrityError(f"{what} {path} is locked by another process ({e}); try again when it is free")
    msg = str(e).lower()
    if "readonly" in msg:  # the file or its folder: SQLite needs to write both (-wal, -shm beside the file)
        return IntegrityError(
            f"{what} {path} cannot be written ({e}); it and its folder need write permission, even to read it"
        )
    if "full" in msg or "disk i/o" in msg:
        return IntegrityError(
            f"{what} {path}: cannot write ({e}); free disk space and try again, nothing was lost"
        )
    if "malformed" in msg or "not a database" in msg or "corrupt" in msg:
        return IntegrityError(
            f"{what} {path} is corrupt ({e}); recover what is readable into a new file with "
            f"`sqlite3 {path} .recover | sqlite3 {path}.recovered` and use that one"
        )
    return IntegrityError(f"{what} {path} failed: {e}")


def _is_locked(e: BaseException) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


def _retry(fn, timeout: float, *, first: float = 0.002, most: float = 0.05):  # type: ignore[no-untyped-def]
    """Call `fn` until it stops failing with SQLITE_BUSY/LOCKED, sleeping with jittered exponential backoff."""
    deadline = time.monotonic() + timeout
    delay = first
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if not _is_locked(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, most)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, *, busy_timeout: float = 10.0) -> Iterator[sqlite3.Connection]:
    """A short write transaction: `BEGIN IMMEDIATE` retried with jittered backoff, rolled back on any error.

    Taking the write lock up front (IMMEDIATE) means two processes never both read-then-upgrade and deadlock;
    if the lock cannot be had within `busy_timeout` nothing was written and `IntegrityError` says so.
    """
    # SQLite's own busy handler sleeps in steps of up to 100 ms; polling the lock ourselves every 0.5-5 ms
    # keeps ten writer processes from idling while the lock is free.
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        _retry(lambda: conn.execute("BEGIN IMMEDIATE"), busy_timeout, first=0.0005, most=0.005)
    except sqlite3.OperationalError as e:
        raise IntegrityError(
            f"memory database is locked by another process (waited {busy_timeout:.0f}s); nothing was written"
        ) from e
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back itself (a full disk): keep its error, not ours
            conn.execute("ROLLBACK")
        raise
    else:
        try:
            _retry(lambda: conn.execute("COMMIT"), busy_timeout)
        except sqlite3.OperationalError as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise IntegrityError(f"could not commit to the memory database ({e}); nothing was written") from e


def generation(conn: sqlite3.Connection) -> tuple[int, int]:
    """(writes, removals) counters bumped by triggers: cheap change detection across processes."""
    rows = dict(
        conn.execute("SELECT key, value FROM meta WHERE key IN ('generation', 'removals')").fetchall()
    )
    return int(rows.get("generation", 0)), int(rows.get("removals", 0))


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def setdefault_meta(conn: sqlite3.Connection, key: str, value: str, *, busy_timeout: float = 10.0) -> str:
    """The `meta` value of `key` (main or feedback database), storing `value` first if there is none; when two
    processes race, both get the one that was stored first."""
    stored = get_meta(conn, key)
    if stored is None:
        _retry(
            lambda: conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value)),
            busy_timeout,
        )
        stored = get_meta(conn, key)
    return str(stored)


def compact(conn: sqlite3.Connection) -> bool:
    """Checkpoint the WAL into the main file, VACUUM, and truncate the WAL to zero bytes.

    With `secure_delete` on, freed pages are zeroed; VACUUM rebuilds the file so no free page survives, and
    the TRUNCATE checkpoint leaves the `-wal` file empty. Returns False if a reader in another process kept
    the WAL from being fully checkpointed.
    """
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    _retry(lambda: conn.execute("VACUUM"), 10.0)
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return busy == 0
