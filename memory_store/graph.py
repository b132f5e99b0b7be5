"""Similarity/entity graph between memories and Leiden communities, for browsing and related-memory expansion.

SuperLocalMemory v2.7 (`graph_engine.py`) rebuilds all edges with cosine >= 0.3 over the whole store and runs
`leidenalg` (ModularityVertexPartition, seed 42); its edge count grows quadratically (2.46M edges at 5k
memories). Here edges are added on write, only to the new memory's few nearest neighbours (similarity plus
shared entities), so the graph stays sparse and linear in size; the Leiden call is the paper's. Edges cascade
away with either endpoint, so erasure removes them.
"""

from __future__ import annotations

import sqlite3


def link(
    conn: sqlite3.Connection,
    memory_id: int,
    neighbours: list[tuple[int, float]],
    *,
    min_similarity: float,
    max_edges: int = 8,
) -> int:
    """Connect a new memory to its neighbours (inside the caller's transaction); returns edges added."""
    shared = dict(
        conn.execute(
            "SELECT b.memory_id, count(*) FROM entities a JOIN entities b ON a.entity = b.entity "
            "WHERE a.memory_id = ? AND b.memory_id != ? GROUP BY b.memory_id",
            (memory_id, memory_id),
        ).fetchall()
    )
    weights: dict[int, float] = {}
    for other, sim in neighbours:
        if other != memory_id and (sim >= min_similarity or shared.get(other, 0) >= 2):
            weights[other] = sim + 0.1 * shared.get(other, 0)
    best = sorted(weights.items(), key=lambda kv: -kv[1])[:max_edges]
    conn.executemany(
        "INSERT OR REPLACE INTO edges (src, dst, weight) VALUES (?, ?, ?)",
        [(min(memory_id, o), max(memory_id, o), round(w, 4)) for o, w in best],
    )
    return len(best)


def communities(
    conn: sqlite3.Connection, namespace: str, *, resolution: float = 1.0, seed: int = 42
) -> dict[int, int]:
    """Leiden (modularity, weighted) over the namespace's graph: memory id -> community id (largest first)."""
    import igraph as ig
    import leidenalg

    ids = [r[0] for r in conn.execute("SELECT id FROM memories WHERE namespace=? ORDER BY id", (namespace,))]
    if not ids:
        return {}
    pos = {m: k for k, m in enumerate(ids)}
    rows = conn.execute(
        "SELECT e.src, e.dst, e.weight FROM edges e JOIN memories m ON m.id = e.src WHERE m.namespace = ?",
        (namespace,),
    ).fetchall()
    edges = [(pos[s], pos[d]) for s, d, _ in rows if s in pos and d in pos]
    weights = [w for s, d, w in rows if s in pos and d in pos]
    g = ig.Graph(n=len(ids), edges=edges)
    part = leidenalg.find_partition(
        g,
        leidenalg.RBConfigurationVertexPartition,
        weights=weights or None,
        resolution_parameter=resolution,
        n_iterations=-1,
        seed=seed,
    )
    return {ids[v]: c for c, members in enumerate(part) for v in members}


def neighbours(conn: sqlite3.Connection, memory_id: int) -> list[tuple[int, float]]:
    """Direct graph neighbours, strongest first."""
    return conn.execute(
        "SELECT CASE WHEN src = ? THEN dst ELSE src END, weight FROM edges WHERE src = ? OR dst = ? "
        "ORDER BY weight DESC",
        (memory_id, memory_id, memory_id),
    ).fetchall()
