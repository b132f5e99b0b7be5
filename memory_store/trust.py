"""Bayesian trust per agent: a Beta posterior with wall-clock decay (SuperLocalMemory v2.7, arXiv 2603.02240).

Faithful part: each agent has Beta(alpha, beta) with the paper's prior Beta(2, 1) (trust 2/3), trust is the
posterior mean, the paper's asymmetric weights for quick deletes (+0.5 to beta) and write bursts (+0.4, more
than 20 writes in 5 minutes), a tiny positive nudge per normal write (+0.01), and an append-only signal log.

Changes, and why:
- Self-declared importance is no evidence (v2.7 adds +0.2 to alpha for importance >= 7, which lets a sleeper
  buy trust). Positive evidence comes only from other agents confirming an agent's memories, scaled by the
  confirmer's own trust.
- Content signals feed beta: contradicting a better-supported memory (+1.0), instruction-like text aimed at
  agents (+0.75), credentials (+0.5), URLs to hosts no trusted memory mentions (+0.25).
- Decay is by time, not by signal count: alpha and beta relax toward the prior with a 30-day half-life, so old
  good behaviour cannot shield new bad behaviour forever and old mistakes are forgiven.
- Every signal is recorded against the same agent id that wrote the memory (v2.7's MCP path checks
  `"mcp:mcp-client"` but credits every signal to `"user"`, so it can never block anyone).
- The human user (`user`) is pinned at trust 1.0.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

PRIOR_ALPHA, PRIOR_BETA = 2.0, 1.0
HALF_LIFE_S = 30 * 24 * 3600.0
USER = "user"
BURST_WINDOW_S, BURST_WRITES = 300.0, 20
QUICK_DELETE_S = 3600.0

# signal -> (added to alpha, added to beta)
SIGNALS: dict[str, tuple[float, float]] = {
    "normal_write": (0.01, 0.0),
    "confirmed_by_other": (0.30, 0.0),
    "quick_delete": (0.0, 0.50),
    "write_burst": (0.0, 0.40),
    "contradiction": (0.0, 1.00),
    "instruction_text": (0.0, 0.75),
    "credential": (0.0, 0.50),
    "unknown_url": (0.0, 0.25),
}


@dataclass(frozen=True)
class AgentTrust:
    agent_id: str
    trust: float
    alpha: float
    beta: float
    pinned: bool


def _decayed(alpha: float, beta: float, age_s: float, half_life_s: float) -> tuple[float, float]:
    f = 0.5 ** (max(age_s, 0.0) / half_life_s)
    return PRIOR_ALPHA + (alpha - PRIOR_ALPHA) * f, PRIOR_BETA + (beta - PRIOR_BETA) * f


def ensure_agent(conn: sqlite3.Connection, agent_id: str, now: float) -> None:
    """Register an agent at the prior (the user pinned at 1.0); call inside a write transaction."""
    conn.execute(
        "INSERT OR IGNORE INTO agents (agent_id, alpha, beta, pinned, updated_at, first_seen) VALUES (?, ?, "
        "?, ?, ?, ?)",
        (agent_id, PRIOR_ALPHA, PRIOR_BETA, int(agent_id == USER), now, now),
    )


def get(
    conn: sqlite3.Connection, agent_id: str, now: float, *, half_life_s: float = HALF_LIFE_S
) -> AgentTrust:
    row = conn.execute(
        "SELECT alpha, beta, pinned, updated_at FROM agents WHERE agent_id=?", (agent_id,)
    ).fetchone()
    if row is None:
        pinned = agent_id == USER
        return AgentTrust(
            agent_id, 1.0 if pinned else PRIOR_ALPHA / (PRIOR_ALPHA + PRIOR_BETA), 2.0, 1.0, pinned
        )
    a, b = _decayed(row[0], row[1], now - row[3], half_life_s)
    return AgentTrust(agent_id, 1.0 if row[2] else a / (a + b), a, b, bool(row[2]))


def trust_map(conn: sqlite3.Connection, agent_ids: set[str], now: float) -> dict[str, float]:
    """Current (decayed) trust of several agents in one query; unknown agents get the prior."""
    ids = sorted(agent_ids)
    out = {a: 1.0 if a == USER else PRIOR_ALPHA / (PRIOR_ALPHA + PRIOR_BETA) for a in ids}
    if ids:
        marks = ",".join("?" * len(ids))
        sql = f"SELECT agent_id, alpha, beta, pinned, updated_at FROM agents WHERE agent_id IN ({marks})"
        for agent, alpha, beta, pinned, updated in conn.execute(sql, ids):
            a, b = _decayed(alpha, beta, now - updated, HALF_LIFE_S)
            out[agent] = 1.0 if pinned else a / (a + b)
    return out


def record(
    conn: sqlite3.Connection,
    agent_id: str,
    signal: str,
    now: float,
    *,
    memory_id: int | None = None,
    scale: float = 1.0,
    half_life_s: float = HALF_LIFE_S,
) -> float:
    """Apply one signal inside the caller's transaction; returns the agent's trust after it."""
    d_alpha, d_beta = (w * scale for w in SIGNALS[signal])
    ensure_agent(conn, agent_id, now)
    cur = get(conn, agent_id, now, half_life_s=half_life_s)
    alpha, beta = cur.alpha + d_alpha, cur.beta + d_beta
    after = 1.0 if cur.pinned else alpha / (alpha + beta)
    conn.execute(
        "UPDATE agents SET alpha=?, beta=?, updated_at=? WHERE agent_id=?", (alpha, beta, now, agent_id)
    )
    conn.execute(
        "INSERT INTO trust_signals (agent_id, signal, d_alpha, d_beta, trust_after, memory_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (agent_id, signal, d_alpha, d_beta, after, memory_id, now),
    )
    return after


def is_burst(conn: sqlite3.Connection, agent_id: str, now: float) -> bool:
    """True on the write that crosses each multiple of 20 writes in 5 minutes (across processes)."""
    if agent_id == USER:
        return False
    (n,) = conn.execute(
        "SELECT count(*) FROM memories WHERE agent_id=? AND created_at > ?", (agent_id, now - BURST_WINDOW_S)
    ).fetchone()
    return n > BURST_WRITES and (n - 1) % BURST_WRITES == 0


def support(trusts: list[float]) -> float:
    """Noisy-OR of the trust of every agent that wrote or confirmed a memory."""
    p = 1.0
    for t in trusts:
        p *= 1.0 - t
    return 1.0 - p


def report(conn: sqlite3.Connection, now: float, agent_id: str | None = None) -> list[dict[str, object]]:
    """Per agent: trust, posterior, memory and signal counts (`trust_report`, `protect memory trust`)."""
    ids = (
        [agent_id]
        if agent_id
        else [r[0] for r in conn.execute("SELECT agent_id FROM agents ORDER BY agent_id")]
    )
    out = []
    for a in ids:
        t = get(conn, a, now)
        counts = dict(
            conn.execute(
                "SELECT status, count(*) FROM memories WHERE agent_id=? GROUP BY status", (a,)
            ).fetchall()
        )
        signals = dict(
            conn.execute(
                "SELECT signal, count(*) FROM trust_signals WHERE agent_id=? GROUP BY signal", (a,)
            ).fetchall()
        )
        out.append(
            {
                "agent": a,
                "trust": round(t.trust, 4),
                "alpha": round(t.alpha, 3),
                "beta": round(t.beta, 3),
                "pinned": t.pinned,
                "active": counts.get("active", 0),
                "quarantined": counts.get("quarantined", 0),
                "signals": signals,
            }
        )
    return out
