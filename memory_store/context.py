"""Contextual indexing: each memory is keyword-indexed together with its neighbours in the same session.

A memory is often a fragment that only makes sense next to what was said around it ("Yes, it was amazing!"
answers the turn before). Like "contextual retrieval" (prepending a chunk's surroundings before indexing it),
the `context` column of the FTS5 index holds the text of the `WINDOW` memories before and after it in the same
namespace and session by the same agent; a quarantined neighbour keeps its place but lends no text. The column
has its own (lower) bm25 weight, so a memory is found by words its neighbours used while its own words still
count most. Memories without a session have no context. Context is derived data, rebuilt on every change to a
window (a write, a status change, an erasure), so erased text never survives in a neighbour's context.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

WINDOW = 2

_KEY = "SELECT namespace, session, agent_id FROM memories WHERE id = ?"
_SIDE = (
    "SELECT id, content, status FROM memories WHERE namespace = ? AND session = ? AND agent_id = ? "
    "AND id {op} ? ORDER BY id {order} LIMIT ?"
)


def _window(conn: sqlite3.Connection, memory_id: int) -> list[tuple[int, str, str]]:
    """(id, content, status) of the `WINDOW` memories on each side of `memory_id`, in session order."""
    key = conn.execute(_KEY, (memory_id,)).fetchone()
    if key is None or not key[1]:
        return []
    before = conn.execute(_SIDE.format(op="<", order="DESC"), (*key, memory_id, WINDOW)).fetchall()
    after = conn.execute(_SIDE.format(op=">", order="ASC"), (*key, memory_id, WINDOW)).fetchall()
    return before[::-1] + after


def window(conn: sqlite3.Connection, memory_id: int) -> list[int]:
    """Ids of the memories in `memory_id`'s window: the windows are symmetric, so also those whose
    context includes it."""
    return [i for i, _, _ in _window(conn, memory_id)]


def context_text(conn: sqlite3.Connection, memory_id: int) -> str:
    """The active neighbours' text, in session order (empty without a session)."""
    return " ".join(c for _, c, status in _window(conn, memory_id) if status == "active")


def refresh(conn: sqlite3.Connection, ids: Iterable[int]) -> int:
    """Recompute the context of `ids` (inside the caller's transaction); returns how many changed.

    Only changed rows are written: each write re-indexes the row in FTS5 (the update trigger).
    """
    changed = 0
    for i in dict.fromkeys(ids):
        text = context_text(conn, i)
        changed += conn.execute(
            "UPDATE memories SET context = ? WHERE id = ? AND context != ?", (text, i, text)
        ).rowcount
    return changed


def replies(conn: sqlite3.Connection, ids: Iterable[int], *, quarantined: bool = False) -> dict[int, int]:
    """{memory id: the next memory in its session} for those of `ids` that ask something (a '?' in their text).

    In a conversation the answer is the turn after the question (an adjacency pair: Schegloff & Sacks,
    "Opening up closings", Semiotica 1973), so a query that matches a question is also looking for its reply,
    whose own words often share little with the query ("I've had them for 3 years now!"). Same session key
    as the windows above. A quarantined question has no reply unless `quarantined` (it lends nothing, like a
    quarantined neighbour's context), so a hidden memory cannot push the one after it up the ranking.
    """
    ids = list(dict.fromkeys(ids))
    asks = []
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        sql = (
            "SELECT id, namespace, session, agent_id FROM memories WHERE id IN ({}) "
            "AND session IS NOT NULL AND session != '' AND instr(content, '?') > 0{}"
        ).format(",".join("?" * len(chunk)), "" if quarantined else " AND status = 'active'")
        asks += conn.execute(sql, chunk).fetchall()
    out = {}
    for mid, ns, session, agent in asks:
        nxt = conn.execute(_SIDE.format(op=">", order="ASC"), (ns, session, agent, mid, 1)).fetchone()
        if nxt is not None:
            out[mid] = nxt[0]
    return out


def around(conn: sqlite3.Connection, ids: Iterable[int]) -> set[int]:
    """`ids` and every memory in their windows: what to refresh after they are written or change status."""
    out = set(ids)
    for i in list(out):
        out.update(window(conn, i))
    return out
