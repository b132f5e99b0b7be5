"""Complete erasure with a receipt: `forget` by id, query, tag, agent or namespace.

SuperLocalMemory v2.7 erases with a plain `DELETE` while foreign keys are off, so graph rows, events, trust
signals and ranking feedback keep traces, FTS5 segments keep the tokens until a merge, and the WAL keeps the
text until a checkpoint; nothing runs VACUUM. Here one transaction deletes the rows (foreign keys cascade to
embeddings, edges, entities, confirmations and events; trust signals keep their score change but lose the
link), rebuilds the contextual index of the erased memories' session neighbours (`memory_store.context`),
merges the FTS5 index (`optimize`) so no segment holds the old tokens, deletes the feedback rows, then
checkpoints the WAL, VACUUMs (with `secure_delete` on) and truncates the WAL. The receipt lists what was
removed and checks the files byte by byte for each erased text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memory_store import context, db, trust
from memory_store import text as T
from memory_store.store import check_id, check_text
from memory_store.text import OWN_TEXT
from protect.errors import ConfigError, IntegrityError, ProtectError

if TYPE_CHECKING:
    from memory_store.store import MemoryStore

_CASCADES = {
    "embeddings": "SELECT count(*) FROM embeddings WHERE memory_id IN ({})",
    "edges": "SELECT count(*) FROM edges WHERE src IN ({0}) OR dst IN ({0})",
    "entities": "SELECT count(*) FROM entities WHERE memory_id IN ({})",
    "confirmations": "SELECT count(*) FROM confirmations WHERE memory_id IN ({})",
    "events": "SELECT count(*) FROM events WHERE memory_id IN ({})",
    "trust_signal_links": "SELECT count(*) FROM trust_signals WHERE memory_id IN ({})",
}
_SCAN_LIMIT = 200  # erased texts checked byte by byte in the files


@dataclass
class ForgetReceipt:
    """What `forget` removed. `residue_free` is True when no erased text occurs in any database file."""

    ids: list[int]
    content_hashes: list[str]
    namespaces: dict[str, int]
    counts: dict[str, int]
    dry_run: bool = False
    wal_truncated: bool = False
    vacuumed: bool = False
    residue_free: bool | None = None
    residue_files: list[str] = field(default_factory=list)
    checked_texts: int = 0
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_ids(
    store: MemoryStore,
    *,
    ids: Any,
    query: str | None,
    tag: str | None,
    agent: str | None,
    namespace: str | None,
    owner: str | None,
) -> list[int]:
    """Memories matching every given selector (a query matches all of its words, not a ranking)."""
    if ids is None and query is None and tag is None and agent is None and namespace is None:
        raise ConfigError("forget needs at least one of: ids, query, tag, agent, namespace")
    where, args = ["1=1"], []
    if ids is not None:
        id_list = id_selector(ids)
        if not id_list:
            return []
        where.append(f"id IN ({','.join('?' * len(id_list))})")
        args += id_list
    for what, val in (("forget query", query), ("tag", tag), ("agent id", agent), ("namespace", namespace)):
        if val is not None:
            check_text(val, what)  # refused, not cleaned: a cleaned selector could erase other memories
    if query is not None:
        expr = T.fts_query(query, mode="all", columns=OWN_TEXT)
        if expr is None:
            raise ConfigError("the forget query has no words")
        where.append("id IN (SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?)")
        args.append(expr)
    if tag is not None:
        where.append("EXISTS (SELECT 1 FROM json_each(memories.tags) WHERE value = ?)")
        args.append(tag.strip().lower())
    for col, val in (("agent_id", agent), ("namespace", namespace), ("agent_id", owner)):
        if val is not None:
            where.append(f"{col} = ?")
            args.append(val)
    return [
        r[0]
        for r in store.conn.execute(f"SELECT id FROM memories WHERE {' AND '.join(where)} ORDER BY id", args)
    ]


def id_selector(ids: Any) -> list[int]:
    """`ids` as a list of memory ids: one int or an iterable of ints.

    A str is refused: iterating "12" would select memories 1 and 2.
    """
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (int, Iterable)):
        raise ConfigError(f"ids must be an integer or a list of integers, got {ids!r}"[:200])
    return [check_id(i) for i in ([ids] if isinstance(ids, int) else ids)]


def forget(
    store: MemoryStore, chosen: list[int], *, requester: str = trust.USER, dry_run: bool = False
) -> ForgetReceipt:
    """Erase the memories `chosen` (from `select_ids`) and every trace of them; see the module docstring."""
    conn = store.conn
    rows = store._rows(chosen)
    receipt = ForgetReceipt(
        ids=chosen,
        content_hashes=[rows[i].content_hash for i in chosen],
        namespaces={},
        counts={"memories": len(chosen), "fts_rows": len(chosen)},
        dry_run=dry_run,
        at=time.time(),
    )
    for i in chosen:
        receipt.namespaces[rows[i].namespace] = receipt.namespaces.get(rows[i].namespace, 0) + 1
    for name, sql in _CASCADES.items():
        receipt.counts[name] = sum(_count(conn, sql, chunk) for chunk in _chunks(chosen))
    receipt.counts["feedback"] = sum(store.feedback.served(chunk) for chunk in _chunks(chosen))
    receipt.counts["contexts_rebuilt"] = len(context.around(conn, chosen) - set(chosen))
    if dry_run or not chosen:
        return receipt
    now = time.time()
    with db.transaction(conn, busy_timeout=store.busy_timeout):
        neighbours = context.around(conn, chosen) - set(chosen)  # their context holds the erased text
        for i in chosen:  # an agent quickly deleting its own writes is the paper's `quick_delete` signal
            m = rows[i]
            if m.agent == requester != trust.USER and now - m.created_at < trust.QUICK_DELETE_S:
                trust.record(conn, m.agent, "quick_delete", now)
        for chunk in _chunks(chosen):
            conn.execute(f"DELETE FROM memories WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        context.refresh(conn, sorted(neighbours))
        conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('optimize')")
        conn.execute(
            "INSERT INTO events (memory_id, agent_id, kind, detail, created_at) VALUES (NULL, ?, 'forget', "
            "?, ?)",
            (requester, json.dumps({"count": len(chosen)}), now),
        )
    try:
        store.feedback.forget(chosen)
    except ProtectError as e:
        raise IntegrityError(
            f"erased {len(chosen)} memories, but their ranking-feedback rows (ids and query hashes, no text) "
            f"remain until the next recall or forget finds the file free: {e}"
        ) from e
    try:
        receipt.wal_truncated = db.compact(conn) and store.feedback.compact()
    except ProtectError as e:  # the rows are gone (committed above); their text may remain in free pages
        raise IntegrityError(
            f"erased {len(chosen)} memories, but compacting the database failed ({e}); their text may remain in "
            "free pages or the -wal file until it succeeds: fix that and run the same forget again to finish"
        ) from e
    receipt.vacuumed = True
    _verify(store, [rows[i].content for i in chosen], receipt)
    return receipt


def _verify(store: MemoryStore, texts: list[str], receipt: ForgetReceipt) -> None:
    """Scan the database files for each erased text (skipping texts a surviving memory still contains)."""
    files = store.files()
    if not files:
        return
    blobs = {str(p): p.read_bytes() for p in files}
    checked = 0
    for text in texts[:_SCAN_LIMIT]:
        if store.conn.execute(
            "SELECT 1 FROM memories WHERE instr(content, ?) > 0 LIMIT 1", (text,)
        ).fetchone():
            continue
        checked += 1
        needle = text.encode("utf-8")
        receipt.residue_files += [name for name, blob in blobs.items() if needle in blob]
    receipt.residue_files = sorted(set(receipt.residue_files))
    receipt.checked_texts = checked
    receipt.residue_free = not receipt.residue_files


def residue(paths: list[Path], needles: list[str]) -> dict[str, int]:
    """Occurrences of each needle (UTF-8 bytes) across `paths`: an independent check for tests."""
    blobs = [p.read_bytes() for p in paths if p.exists()]
    return {n: sum(b.count(n.encode("utf-8")) for b in blobs) for n in needles}


def _count(conn: Any, sql: str, ids: list[int]) -> int:
    marks = ",".join("?" * len(ids))
    return int(conn.execute(sql.format(marks), ids * sql.count("{")).fetchone()[0])


def _chunks(ids: list[int], size: int = 400) -> list[list[int]]:
    return [ids[k : k + size] for k in range(0, len(ids), size)]
