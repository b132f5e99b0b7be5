"""`MemoryStore`: the memory several local agents share (SuperLocalMemory v2.7, arXiv 2603.02240, redone).

Faithful part: one SQLite file (WAL, busy timeout), an external-content FTS5 index kept in sync by triggers,
per-agent provenance and a Beta trust model, a similarity graph with Leiden communities, behavioural data in a
separate file.

Fixes of the paper's known gaps (see `docs`/README):
- Search fuses FTS5 bm25 (over each memory's text and its session neighbours') with semantic similarity, by min-max
  score mixing or weighted reciprocal-rank fusion, instead of giving every FTS hit a constant 0.5, then adds a
  session prior; the vector index follows every write (no 5% refit threshold).
- Trust is wired end to end: the id that writes is the id that is scored, content signals and contradictions
  feed it, low-trust writes are quarantined (stored, not served by default), and trust weighs ranking.
- Dedup is per namespace, plus a near-duplicate check (a near-duplicate from another agent is a confirmation).
- `forget` erases every derived trace and proves it (see `memory_store.erase`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from memory_store import context, db, graph, trust, vectors
from memory_store import text as T
from memory_store.feedback import FeedbackLog
from protect.errors import ConfigError, IntegrityError, MissingDependencyError
from protect.paths import atomic_path, home

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "default"
_NAME = re.compile(r"^[\w.:@/+-]{1,128}$")
_COLUMNS = (
    "id, namespace, content, tags, agent_id, session, transport, importance, status, flags, created_at, "
    "updated_at, content_hash"
)
# only a duplicate is skipped: OR IGNORE would also skip rows that break NOT NULL or CHECK, silently
_INSERT = (
    "INSERT INTO memories (namespace, content, content_hash, tags, agent_id, session, transport, "
    "importance, status, flags, created_at, updated_at, words) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (namespace, content_hash) DO NOTHING"
)
_EVENT = "INSERT INTO events (memory_id, agent_id, kind, detail, created_at) VALUES (?, ?, ?, ?, ?)"
# (near-duplicate, contradiction, graph edge) similarity thresholds per embedder
_THRESHOLDS = {"minilm": (0.95, 0.70, 0.45), "tfidf": (0.90, 0.50, 0.30)}
# bm25's share of a hybrid score per embedder, chosen on two LoCoMo dev conversations (bench/results/memory.md)
_KEYWORD_WEIGHT = {"minilm": 0.8, "tfidf": 0.9}
# weight of the session prior (`MemoryStore._session_prior`), chosen the same way
_SESSION_WEIGHT = {"minilm": 0.4, "tfidf": 0.2}
# weight of the length prior (`MemoryStore.length_weight`), chosen the same way
_LENGTH_WEIGHT = {"minilm": 0.15, "tfidf": 0.3}
_MIN_COMMON_DOCS = 20  # a word in fewer memories than this is never "common"
MAX_ID = 2**63 - 1  # SQLite's largest rowid
_F = TypeVar("_F", bound=Any)


def default_path() -> Path:
    """`$PROTECT_HOME/memory/memory.db`."""
    return home() / "memory" / "memory.db"


@dataclass(frozen=True)
class Memory:
    id: int
    namespace: str
    content: str
    tags: list[str]
    agent: str
    session: str
    transport: str
    importance: int
    status: str
    flags: list[str]
    created_at: float
    updated_at: float
    content_hash: str
    score: float | None = None
    trust: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WriteResult:
    """What `remember` did: the id, whether it was quarantined or merged into an existing memory, and why."""

    id: int
    status: str
    duplicate_of: int | None = None
    flags: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    trust: float = 1.0
    contradicts: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _memory(row: tuple[Any, ...]) -> Memory:
    return Memory(*row[:3], _json_list(row[3], row[0]), *row[4:9], _json_list(row[9], row[0]), *row[10:13])


def _json_list(text: Any, memory_id: int) -> list[Any]:
    """A stored tags or flags list; a damaged one (edited by hand, a bad page) is one line naming the memory."""
    if text == "[]":  # most rows have no tags or flags: skip the decoder
        return []
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as e:
        value = e
    if not isinstance(value, list):
        raise IntegrityError(
            f"memory {memory_id} in the memory database is damaged (its tags or flags {text!r:.60} are no JSON "
            "list); export what is readable or recover the file with `sqlite3 DB .recover`"
        )
    return value


def check_name(value: str, what: str) -> str:
    """A namespace or agent id; `fullmatch`, since `$` alone would let a trailing newline through."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(f"invalid {what} {value!r}: use 1-128 letters, digits or . : @ / + - _")
    return value


def check_id(value: Any) -> int:
    """A memory id: an int SQLite can hold (a bool, str or float is refused, not coerced)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise ConfigError(f"memory ids must be integers from 0 to 2**63-1, got {value!r}")
    return value


def check_text(value: Any, what: str, *, empty: bool = True) -> str:
    """Text that can be stored: a str (non-empty unless `empty`) that UTF-8 can encode."""
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise ConfigError(f"{what} must be {'' if empty else 'non-empty '}text, got {value!r}"[:200])
    if not T.is_unicode(value):
        raise ConfigError(f"{what} is not valid Unicode (lone surrogates, e.g. undecodable bytes)")
    if "\x00" in value:  # C code (FTS5's tokenizer, many clients) would see the text end there
        raise ConfigError(f"{what} contains a NUL character")
    return value


def _timestamp(value: Any, what: str) -> float:
    """A Unix time from year 1970 to 9999 (NaN would break the NOT NULL column, a string is not a time, and one
    that `datetime` cannot show would break every later `list` and `search`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < _YEAR_10000:
        raise ConfigError(f"{what} must be a Unix time in seconds from 1970 to 9999, got {value!r}")
    return float(value)


_YEAR_10000 = 253402300800.0  # 10000-01-01T00:00:00Z


def _guard(fn: _F) -> _F:
    """Report a SQLite failure of the main database (a damaged page, a lock) as one `IntegrityError` line.

    Damage past the header shows only when a query reads that page, so every public method needs this.
    """

    @functools.wraps(fn)
    def wrapper(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise db.database_error(self.path or ":memory:", e) from e

    return wrapper  # type: ignore[return-value]


def _tag_list(tags: Any) -> list[str]:
    """Sorted distinct lower-case tags; `None` is no tags, one str is one tag, control characters are refused
    (a NUL or newline in a tag would print as something else)."""
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    elif isinstance(tags, (bytes, dict)) or not isinstance(tags, Iterable):
        raise ConfigError(f"tags must be a list of strings, got {tags!r}"[:200])
    tag_list = list(tags)
    if len(tag_list) > 32 or any(not isinstance(t, str) or not 0 < len(t.strip()) <= 64 for t in tag_list):
        raise ConfigError("tags must be at most 32 non-empty strings of up to 64 characters")
    for t in tag_list:
        check_text(t, "a tag")
        if any(unicodedata.category(c) == "Cc" for c in t):
            raise ConfigError(f"tag {t!r} contains a control character")
    return sorted({t.strip().lower() for t in tag_list})


def _read_jsonl(src: str | Path, namespace: str | None) -> list[tuple[str, Any]]:
    """(`FILE:LINE`, record) for each non-blank line; a line that is not UTF-8 JSON raises naming it."""
    out = []
    try:
        with open(src, "rb") as fh:
            for k, raw in enumerate(fh, 1):
                where = f"{src}:{k}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ConfigError(f"{where}: not UTF-8 text ({e.reason}); nothing was imported") from e
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{where}: not a JSON line ({e.msg}); nothing was imported") from e
                except (ValueError, RecursionError) as e:  # a 5000-digit number, arrays nested 100000 deep
                    raise ConfigError(f"{where}: not a usable JSON line ({e}); nothing was imported") from e
                if namespace is not None and isinstance(rec, dict):
                    rec["namespace"] = namespace
                out.append((where, rec))
    except OSError as e:
        raise ConfigError(f"cannot read {src}: {e.strerror or e}") from e
    return out


class MemoryStore:
    """Shared agent memory in one SQLite file (`path`; `None` = default location, `":memory:"` = RAM only).

    Args:
        embedder: "minilm" (the `semantic` extra), "tfidf", or "auto" (what the database was built with).
        fusion: "minmax" mixes min-max normalised bm25 and semantic scores, "rrf" is reciprocal-rank fusion
            with `rrf_k`; both weigh bm25 by `keyword_weight` (default: 0.8 with MiniLM, 0.9 with TF-IDF).
            The defaults of these knobs were chosen on LoCoMo dev conversations (bench/results/memory.md).
        quarantine_below: non-user writes are quarantined when the writer's trust falls under this.
        min_trust: memories of agents below this trust are not served (unless include_quarantined).
        trust_weight: ranking score is multiplied by trust ** trust_weight (0 disables the weighting).
        contradiction_margin: a contradiction counts only against memories whose support exceeds the
            writer's trust by this much, so equally new agents cannot silence each other.
        context_weight: bm25 weight of a memory's session neighbours' text (`memory_store.context`) against
            1.0 for its own text; 0 ranks by a memory's own words alone.
        session_weight, session_top: each candidate's score gains `session_weight` times the mean of the best
            `session_top` candidate scores in its session (itself included); 0 disables this session prior
            (default: 0.4 with MiniLM, 0.2 with TF-IDF, chosen on LoCoMo dev conversations).
        reply_weight: a memory that asks something lends `reply_weight` times its fused score to the next
            memory in its session, its reply (`memory_store.context.replies`); 0 disables it (0.75 was best on
            the LoCoMo dev conversations with either embedder).
        length_weight: ranking score is multiplied by 1 + `length_weight` x ln(1 + words in the memory,
            `text.word_count`, stored on write), a
            document-length prior: bm25's length normalisation favours short texts, yet a short memory
            ("Bye!", "Yes, it was!") rarely holds what a query asks for (on LoCoMo 5% of turns under 10 words
            are evidence for some question, 59% of those of 50 words or more). 0 disables it (default: 0.15
            with MiniLM, 0.3 with TF-IDF, chosen on LoCoMo dev conversations). Document priors: Kraaij,
            Westerveld & Hiemstra, "The importance of prior probabilities for entry page search", SIGIR 2002;
            Singhal, Buckley & Mitra, "Pivoted document length normalization", SIGIR 1996.
        common_term_df, max_term_docs, prune_min_docs: above `prune_min_docs` memories, FTS5 queries skip
            words in more than that share of memories or more than `max_term_docs` of them (speed); the
            similarity check on write always does.

    Example:
        >>> with MemoryStore(":memory:", embedder="tfidf") as store:
        ...     store.remember("The staging API listens on port 8443", agent="user").status
        'active'
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        embedder: str = "auto",
        busy_timeout: float = 10.0,
        fusion: str = "minmax",
        keyword_weight: float | None = None,
        context_weight: float = 0.3,
        session_weight: float | None = None,
        session_top: int = 5,
        reply_weight: float = 0.75,
        length_weight: float | None = None,
        rrf_k: int = 10,
        quarantine_below: float = 0.5,
        min_trust: float = 0.35,
        trust_weight: float = 1.0,
        recency_weight: float = 0.1,
        recency_half_life_days: float = 30.0,
        max_content_chars: int = 16_000,
        contradiction_margin: float = 0.05,
        common_term_df: float = 0.05,
        prune_min_docs: int = 5000,
        max_term_docs: int = 2000,
    ) -> None:
        self.path = default_path() if path is None else Path(path) if str(path) != ":memory:" else None
        self.busy_timeout = busy_timeout
        if fusion not in ("minmax", "rrf"):
            raise ConfigError(f"unknown fusion {fusion!r}; choose minmax or rrf")
        if keyword_weight is not None and not 0.0 <= keyword_weight <= 1.0:
            raise ConfigError(f"keyword_weight must be within [0, 1], got {keyword_weight}")
        self.fusion = fusion
        if context_weight < 0.0:
            raise ConfigError(f"context_weight must be >= 0, got {context_weight}")
        self.context_weight = context_weight
        if session_weight is not None and session_weight < 0.0:
            raise ConfigError(f"session_weight must be >= 0, got {session_weight}")
        if not isinstance(session_top, int) or session_top < 1:
            raise ConfigError(f"session_top must be a positive integer, got {session_top!r}")
        self.session_top = session_top
        if not reply_weight >= 0.0:  # also refuses NaN
            raise ConfigError(f"reply_weight must be >= 0, got {reply_weight}")
        self.reply_weight = reply_weight
        if length_weight is not None and not 0.0 <= length_weight < math.inf:  # also refuses NaN
            raise ConfigError(f"length_weight must be a finite number >= 0, got {length_weight}")
        self.rrf_k = rrf_k
        self.quarantine_below = quarantine_below
        self.min_trust = min_trust
        self.trust_weight = trust_weight
        self.recency_weight = recency_weight
        self.recency_half_life_s = recency_half_life_days * 86400.0
        self.max_content_chars = max_content_chars
        self.contradiction_margin = contradiction_margin
        self.common_term_df = common_term_df
        self.prune_min_docs = prune_min_docs
        self.max_term_docs = max_term_docs
        self._df_cache: tuple[Any, int, dict[str, int]] = (None, 0, {})
        self.conn = db.connect(self.path or ":memory:", busy_timeout=busy_timeout)
        try:
            self.embedder = self._choose_embedder(embedder)
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise db.database_error(self.path or ":memory:", e) from e
        self.keyword_weight = (
            _KEYWORD_WEIGHT[self.embedder.name] if keyword_weight is None else keyword_weight
        )
        self.session_weight = (
            _SESSION_WEIGHT[self.embedder.name] if session_weight is None else session_weight
        )
        self.length_weight = _LENGTH_WEIGHT[self.embedder.name] if length_weight is None else length_weight
        self.near_duplicate, self.contradiction_similarity, self.edge_similarity = _THRESHOLDS[
            self.embedder.name
        ]
        feedback, fallback = (
            (None, None)
            if self.path is None
            else (self.path.with_name(self.path.stem + ".feedback.db"), Path(f"{self.path}-feedback.db"))
        )
        self.feedback = FeedbackLog(
            feedback,
            busy_timeout=busy_timeout,
            existing=self._existing,
            owner=self._store_id,
            fallback=fallback,
        )
        self._indexes: dict[str | None, vectors.VectorIndex] = {}
        self._lock = threading.RLock()
        self._community_cache: dict[str, tuple[Any, dict[int, int]]] = {}

    # ------------------------------------------------------------------ lifecycle
    def _choose_embedder(self, requested: str) -> vectors.Embedder:
        stored = db.get_meta(self.conn, "embedder")
        name = requested
        if requested == "auto":
            name = stored or ("minilm" if vectors.minilm_available() else "tfidf")
            if name == "minilm" and not vectors.minilm_available():
                log.warning("database was built with MiniLM but 'protect[semantic]' is missing: using TF-IDF")
                name = "tfidf"
        emb = vectors.create_embedder(name)
        if stored is None:
            db.setdefault_meta(self.conn, "embedder", name, busy_timeout=self.busy_timeout)
        return emb

    def close(self) -> None:
        self.feedback.close()
        self.conn.close()

    @_guard
    def _store_id(self) -> str:
        """A random id of this database, made on first use (its feedback file records which database it serves)."""
        return db.setdefault_meta(
            self.conn, "store_id", secrets.token_hex(16), busy_timeout=self.busy_timeout
        )

    @_guard
    def _existing(self, ids: set[int]) -> set[int]:
        """Which of `ids` are memories now (read fresh: another process may have erased some)."""
        out: set[int] = set()
        ids_list = sorted(ids)
        for k in range(0, len(ids_list), 500):
            chunk = ids_list[k : k + 500]
            sql = f"SELECT id FROM memories WHERE id IN ({','.join('?' * len(chunk))})"
            out |= {r[0] for r in self.conn.execute(sql, chunk)}
        return out

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def files(self) -> list[Path]:
        """The database files on disk (main, -wal, -shm, and the feedback database's)."""
        if self.path is None:
            return []
        out = []
        for base in (self.path, self.feedback.path):
            if base is not None:
                out += [p for p in (base, Path(f"{base}-wal"), Path(f"{base}-shm")) if p.exists()]
        return out

    # ------------------------------------------------------------------ helpers
    def _index(self, namespace: str | None) -> vectors.VectorIndex:
        idx = self._indexes.get(namespace)
        if idx is None:
            idx = self._indexes[namespace] = vectors.VectorIndex(self.embedder, namespace)
        try:
            idx.refresh(self.conn)
        except MissingDependencyError:
            raise
        except sqlite3.DatabaseError as e:
            raise db.database_error(self.path or ":memory:", e) from e
        return idx

    def _encode(self, texts: list[str]) -> Any:
        return self.embedder.encode(texts)

    def _validate(self, content: str, tags: Iterable[str] | None, importance: int) -> tuple[str, list[str]]:
        """(normalised content, sorted lower-case tags), or `ConfigError` before anything is written."""
        if not isinstance(content, str) or not content.strip():
            raise ConfigError("memory content must be non-empty text")
        check_text(content, "memory content")
        if len(content) > self.max_content_chars:
            raise ConfigError(
                f"memory content has {len(content)} characters; the limit is {self.max_content_chars}"
            )
        tag_list = _tag_list(tags)
        if isinstance(importance, bool) or not isinstance(importance, int) or not 1 <= importance <= 10:
            raise ConfigError(f"importance must be an integer from 1 to 10, got {importance!r}")
        return T.normalize(content), tag_list

    def _fts(self, query: str, namespace: str | None, limit: int, *, mode: str = "any") -> list[int]:
        """Memories whose own text (not their context) matches: for similarity checks on write."""
        return [i for i, _ in self._fts_scored(query, namespace, limit, mode=mode, own=True)]

    def _fts_scored(
        self, query: str, namespace: str | None, limit: int, *, mode: str = "any", own: bool = False
    ) -> list[tuple[int, float]]:
        """FTS5 matches, best first, with their bm25 relevance (negated, so higher is better).

        Columns weigh content 1.0, tags 0.5 and context `context_weight`; `own` matches content and tags only.

        FTS5's bm25 costs time per matching row, so OR-queries leave out common words: always those in half of
        all memories or more (bm25 gives them an IDF of zero), and, in stores of more than `prune_min_docs`
        memories, those in more than `common_term_df` of them or more than `max_term_docs` (a stopword list
        learned from the data; the semantic half of a hybrid search still sees them). The similarity check on
        write (`own`) always prunes, as a "more like this" query: a memory that shares only common words is no
        near-duplicate or contradiction, and the vector index proposes neighbours as well.
        """
        if mode == "any":
            query = " ".join(self._uncommon_terms(query, prune_from=0 if own else self.prune_min_docs))
        expr = T.fts_query(query, mode=mode, columns=T.OWN_TEXT if own else ())
        if expr is None:
            return []
        rank = f"bm25(memories_fts, 1.0, 0.5, {float(self.context_weight)!r})"
        sql = f"SELECT f.rowid, -{rank} FROM memories_fts f"
        args: list[Any] = [expr]
        if namespace is not None:
            sql += " JOIN memories m ON m.id = f.rowid WHERE memories_fts MATCH ? AND m.namespace = ?"
            args.append(namespace)
        else:
            sql += " WHERE memories_fts MATCH ?"
        sql += f" ORDER BY {rank} LIMIT ?"
        args.append(limit)
        return [(r[0], r[1]) for r in self.conn.execute(sql, args)]

    def _uncommon_terms(self, query: str, *, prune_from: int) -> list[str]:
        terms = list(dict.fromkeys(t for t in T.tokens(query) if t not in T.STOPWORDS))
        total, df = self._doc_freqs()
        if total < 2 * _MIN_COMMON_DOCS or len(terms) < 2:
            return terms
        for t in terms:
            if t not in df:
                match = '"' + t.replace('"', '""') + '"'
                sql = "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?"
                df[t] = self.conn.execute(sql, (match,)).fetchone()[0]
        # FTS5's bm25 gives a word in half of all rows or more an IDF of 1e-6: it costs time, adds nothing
        cap = total / 2
        if total > prune_from:
            cap = min(cap, max(min(self.common_term_df * total, self.max_term_docs), _MIN_COMMON_DOCS))
        kept = [t for t in terms if df[t] < cap]
        return kept or sorted(terms, key=lambda t: df[t])[:2]

    def _doc_freqs(self) -> tuple[int, dict[str, int]]:
        """(memories, cached document frequency per word), recounted after an erasure or 10% growth.

        Only which words are common matters here, and that changes slowly: recounting after every write
        (ten processes write at once) would cost more than the searches it speeds up.
        """
        gen = db.generation(self.conn)
        seen, total, df = self._df_cache
        if seen is None or gen[1] != seen[1] or gen[0] - seen[0] > 0.1 * total + 10 or len(df) > 100_000:
            total = self.conn.execute("SELECT count(*) FROM memories").fetchone()[0]
            df = {}
            self._df_cache = (gen, total, df)
        return total, df

    def _rows(self, ids: Iterable[int]) -> dict[int, Memory]:
        ids = list(ids)
        out: dict[int, Memory] = {}
        for k in range(0, len(ids), 500):
            chunk = ids[k : k + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(f"SELECT {_COLUMNS} FROM memories WHERE id IN ({marks})", chunk):
                out[row[0]] = _memory(row)
        return out

    def _neighbours(self, content: str, vec: Any, namespace: str) -> list[tuple[Memory, float]]:
        """Similar memories in the namespace (FTS + vector candidates), most similar first."""
        idx = self._index(namespace)
        cand = set(self._fts(content, namespace, 20)) | {i for i, _ in idx.search(vec, 10)}
        if not cand:
            return []
        rows = self._rows(cand)
        ids = list(rows)
        if self.embedder.dense:
            mat = idx.vectors(ids)
            if mat is None or len(mat) != len(ids):
                mat = self._encode([rows[i].content for i in ids])
        else:
            mat = self._encode([rows[i].content for i in ids])
        sims = vectors.similarity(self.embedder, vec[0] if self.embedder.dense else vec, mat)
        return sorted(((rows[i], float(s)) for i, s in zip(ids, sims, strict=False)), key=lambda p: -p[1])

    def _content_flags(self, content: str, namespace: str, now: float) -> list[str]:
        flags = []
        if T.instruction_like(content):
            flags.append("instruction_text")
        if T.has_credential(content):
            flags.append("credential")
        for host in T.url_hosts(content):
            if not self._host_vouched(host, namespace, now):
                flags.append("unknown_url")
                break
        return flags

    def _host_vouched(self, host: str, namespace: str, now: float) -> bool:
        """A URL host is known if an active memory by a trusted agent (>= 0.8) already mentions it."""
        ids = self._fts(" ".join(T.tokens(host)), namespace, 50, mode="all")
        for m in self._rows(ids).values():
            if m.status == "active" and host in T.url_hosts(m.content):
                if trust.get(self.conn, m.agent, now).trust >= 0.8:
                    return True
        return False

    def _support(self, memory: Memory, now: float, known: dict[str, float]) -> float:
        """Noisy-OR support of a memory; `known` holds the trust already read during this write, by agent."""
        agents = [memory.agent] + [
            r[0]
            for r in self.conn.execute("SELECT agent_id FROM confirmations WHERE memory_id=?", (memory.id,))
        ]
        for a in agents:
            if a not in known:
                known[a] = trust.get(self.conn, a, now).trust
        return trust.support([known[a] for a in agents])

    # ------------------------------------------------------------------ write
    @_guard
    def remember(
        self,
        content: str,
        *,
        agent: str = trust.USER,
        namespace: str = DEFAULT_NAMESPACE,
        tags: Iterable[str] = (),
        importance: int = 5,
        session: str = "",
        transport: str = "api",
    ) -> WriteResult:
        """Store one memory written by `agent`, scoring the agent on what it wrote.

        An exact or near duplicate is not stored twice: when it comes from another agent it confirms the
        existing memory (positive evidence for that memory's author). `importance` is kept for display but is
        never trust evidence (v2.7 rewards importance >= 7, which a sleeper can simply declare).
        """
        check_name(agent, "agent id")
        check_name(namespace, "namespace")
        content, tag_list = self._validate(content, tags, importance)
        with self._lock:
            now = time.time()
            h = T.content_hash(content)
            vec = self._encode([content])
            neigh = self._neighbours(content, vec, namespace)
            flags = self._content_flags(content, namespace, now)
            writer = trust.get(self.conn, agent, now).trust
            known = {agent: writer}  # each agent's trust is read once per write, not once per neighbour
            near = next(
                (m for m, s in neigh if s >= self.near_duplicate and not T.conflicts(content, m.content)),
                None,
            )
            contradicted = [
                m.id
                for m, s in neigh
                if s >= self.contradiction_similarity
                and m.agent != agent
                and m.status == "active"
                and T.conflicts(content, m.content)
                and self._support(m, now, known) > writer + self.contradiction_margin
            ]
            with db.transaction(self.conn, busy_timeout=self.busy_timeout):
                trust.ensure_agent(self.conn, agent, now)
                # the neighbours were read before the write lock: another process may have erased some since
                alive = self._existing({m.id for m, _ in neigh})
                neigh = [(m, sim) for m, sim in neigh if m.id in alive]
                contradicted = [c for c in contradicted if c in alive]
                near = near if near is not None and near.id in alive else None
                row = self.conn.execute(
                    "SELECT id FROM memories WHERE namespace=? AND content_hash=?", (namespace, h)
                ).fetchone()
                dup_id = row[0] if row else (near.id if near else None)
                if dup_id is not None:
                    return self._confirm(dup_id, agent, now)
                flag_list = flags + (["contradiction"] if contradicted else [])
                row = (namespace, content, h, json.dumps(tag_list), agent, session, transport, importance)
                cur = self.conn.execute(
                    _INSERT, (*row, "active", json.dumps(flag_list), now, now, T.word_count(content))
                )
                mid = int(cur.lastrowid or 0)
                signals = ["normal_write", *flags]
                if contradicted:
                    signals.append("contradiction")
                if trust.is_burst(self.conn, agent, now):
                    signals.append("write_burst")
                after = writer
                for sig in signals:
                    after = trust.record(self.conn, agent, sig, now, memory_id=mid)
                suspicious = bool(contradicted) or "instruction_text" in flags or "credential" in flags
                status = "active"
                if agent != trust.USER and (suspicious or after < self.quarantine_below):
                    status = "quarantined"
                    self.conn.execute("UPDATE memories SET status='quarantined' WHERE id=?", (mid,))
                events = [(mid, agent, "write", status)] + [
                    (c, agent, "contradicted_by", str(mid)) for c in contradicted
                ]
                self.conn.executemany(
                    _EVENT,
                    [(*e, now) for e in events],
                )
                if self.embedder.dense:
                    vectors.insert_embeddings(self.conn, self.embedder, [mid], vec)
                self.conn.executemany(
                    "INSERT OR IGNORE INTO entities (memory_id, entity) VALUES (?, ?)",
                    [(mid, e) for e in T.entities(content)],
                )
                graph.link(self.conn, mid, [(m.id, s) for m, s in neigh], min_similarity=self.edge_similarity)
                context.refresh(self.conn, context.around(self.conn, [mid]))
            return WriteResult(mid, status, None, flags, signals, round(after, 4), contradicted)

    def _confirm(self, memory_id: int, agent: str, now: float) -> WriteResult:
        """Another agent wrote the same thing: record a confirmation and credit the author (inside a txn)."""
        m = self._rows([memory_id])[memory_id]
        signals: list[str] = []
        confirmer = trust.get(self.conn, agent, now).trust
        if m.agent != agent:
            new = self.conn.execute(
                "INSERT OR IGNORE INTO confirmations (memory_id, agent_id, created_at) VALUES (?, ?, ?)",
                (memory_id, agent, now),
            ).rowcount
            if new and confirmer >= self.quarantine_below:
                trust.record(
                    self.conn, m.agent, "confirmed_by_other", now, memory_id=memory_id, scale=confirmer
                )
                signals.append("confirmed_by_other")
            if agent == trust.USER and m.status == "quarantined":  # the user re-stating it is an approval
                self.conn.execute("UPDATE memories SET status='active' WHERE id=?", (memory_id,))
                context.refresh(self.conn, context.around(self.conn, [memory_id]))
                m = self._rows([memory_id])[memory_id]
            self.conn.execute(
                _EVENT,
                (memory_id, agent, "confirm", "", now),
            )
        return WriteResult(memory_id, m.status, memory_id, [], signals, round(confirmer, 4))

    @_guard
    def approve(self, memory_id: int) -> Memory:
        """The user releases a quarantined memory. Returned with its agent's current `trust`: below `min_trust`
        the memory is still not served, as none of that agent's are, until its trust recovers."""
        check_id(memory_id)
        with self._lock, db.transaction(self.conn, busy_timeout=self.busy_timeout):
            if not self.conn.execute("UPDATE memories SET status='active' WHERE id=?", (memory_id,)).rowcount:
                raise ConfigError(f"no memory with id {memory_id}")
            self.conn.execute(
                _EVENT,
                (memory_id, trust.USER, "approve", "", time.time()),
            )
            context.refresh(self.conn, context.around(self.conn, [memory_id]))
        m = self.get(memory_id)
        return replace(m, trust=trust.trust_map(self.conn, {m.agent}, time.time())[m.agent])

    # ------------------------------------------------------------------ read
    @_guard
    def get(self, memory_id: int) -> Memory:
        rows = self._rows([check_id(memory_id)])
        if memory_id not in rows:
            raise ConfigError(f"no memory with id {memory_id}")
        return rows[memory_id]

    def _untrusted(self, now: float) -> list[str]:
        """Agents whose trust fell below `min_trust`: their memories are not served (recall, list, related)."""
        agents = {r[0] for r in self.conn.execute("SELECT agent_id FROM agents")}
        return sorted(a for a, t in trust.trust_map(self.conn, agents, now).items() if t < self.min_trust)

    @_guard
    def recall(
        self,
        query: str,
        *,
        namespace: str | None = DEFAULT_NAMESPACE,
        limit: int = 5,
        agent: str = trust.USER,
        include_quarantined: bool = False,
        record: bool = True,
        mode: str = "hybrid",
    ) -> list[Memory]:
        """Hybrid search: bm25 (own text + session context) fused with semantic similarity (`fusion`),
        x trust of the writer x a small recency bonus x a length prior, plus a session prior (`_session_prior`).

        Quarantined memories and memories of agents whose trust fell below `min_trust` are not served unless
        `include_quarantined`. Any text is a valid query: it is reduced to quoted word tokens before FTS5.
        `mode="keyword"` or `"semantic"` uses one of the two rankings alone (for comparisons; the session prior
        and replies still apply). Lone surrogates (undecodable
        bytes from a shell) are dropped from the query: it only ranks, so a cleaned query is still a fair one.
        """
        if mode not in ("hybrid", "keyword", "semantic"):
            raise ConfigError(f"unknown search mode {mode!r}; choose hybrid, keyword or semantic")
        if not isinstance(query, str) or len(query) > 4000:
            raise ConfigError("query must be text of at most 4000 characters")
        query = T.drop_surrogates(query)
        check_name(agent, "agent id")
        if not isinstance(limit, int) or not 1 <= limit <= 200:
            raise ConfigError(f"limit must be an integer from 1 to 200, got {limit!r}")
        if namespace is not None:
            check_name(namespace, "namespace")
        with self._lock:
            now = time.time()
            pool = max(50, 10 * limit)
            keyword = self._fts_scored(query, namespace, pool) if mode != "semantic" else []
            semantic: list[tuple[int, float]] = []
            if query.strip() and mode != "keyword":
                semantic = self._index(namespace).search(self._encode([query]), pool)
            fused = self._with_replies(self._fuse(keyword, semantic, pool), include_quarantined)
            ids = list(fused)
            meta = []  # score on (id, agent, status, created_at); load full rows only for the winners
            for k in range(0, len(ids), 500):
                chunk = ids[k : k + 500]
                marks = ",".join("?" * len(chunk))
                sql = (
                    "SELECT id, agent_id, status, created_at, namespace, session, words FROM memories "
                    f"WHERE id IN ({marks})"
                )
                meta += self.conn.execute(sql, chunk).fetchall()
            trusts = trust.trust_map(self.conn, {r[1] for r in meta}, now)
            scored, groups = [], []
            for mid, who, status, created, ns, session, words in meta:
                t = trusts[who]
                if not include_quarantined and (status == "quarantined" or t < self.min_trust):
                    continue
                fresh = 0.5 ** (max(now - created, 0.0) / self.recency_half_life_s)
                prior = (1.0 + self.recency_weight * fresh) * (1.0 + self.length_weight * math.log1p(words))
                scored.append((fused[mid] * t**self.trust_weight * prior, mid, t))
                groups.append((ns, session, who) if session else mid)  # no session: a group of its own
            scored = self._session_prior(scored, groups)
            scored.sort(key=lambda x: (-x[0], -x[1]))
            rows = self._rows([mid for _, mid, _ in scored[:limit]])
            out = [replace(rows[mid], score=score, trust=t) for score, mid, t in scored[:limit]]
            if record:
                self.feedback.record(query, agent, [m.id for m in out])
            return out

    def _session_prior(
        self, scored: list[tuple[float, int, float]], groups: list[Any]
    ) -> list[tuple[float, int, float]]:
        """Add to each candidate's score `session_weight` x the mean of its session's `session_top` best.

        Cluster-based score regularisation (Liu & Croft, "Cluster-based retrieval using language models",
        SIGIR 2004; Diaz, "Regularizing ad hoc retrieval scores", CIKM 2005): a memory in a session where
        several candidates match the query is more likely relevant than an equally scored one that matches
        alone, and the session (same namespace, session and agent, as in `memory_store.context`) is the
        cluster the writer made. The mean runs over served candidates only, so a quarantined memory lends
        nothing; a memory without a session is its own group (it gains its own score / `session_top`).
        """
        if self.session_weight <= 0.0 or not scored:
            return scored
        by_group: dict[Any, list[float]] = {}
        for (score, _, _), g in zip(scored, groups, strict=True):
            by_group.setdefault(g, []).append(score)
        prior = {
            g: sum(sorted(v, reverse=True)[: self.session_top]) / self.session_top
            for g, v in by_group.items()
        }
        return [
            (score + self.session_weight * prior[g], mid, t)
            for (score, mid, t), g in zip(scored, groups, strict=True)
        ]

    def _with_replies(self, fused: dict[int, float], quarantined: bool) -> dict[int, float]:
        """Each question candidate that may be served lends `reply_weight` x its score to its reply (added to
        the candidates if missing). The reply is then scored like any candidate: its own status decides."""
        if self.reply_weight <= 0.0 or not fused:
            return fused
        out = dict(fused)
        for question, reply in context.replies(self.conn, fused, quarantined=quarantined).items():
            out[reply] = out.get(reply, 0.0) + self.reply_weight * fused[question]
        return out

    def _fuse(
        self, keyword: list[tuple[int, float]], semantic: list[tuple[int, float]], pool: int
    ) -> dict[int, float]:
        """Weighted reciprocal-rank fusion (k=`rrf_k`), or a convex mix of min-max normalised scores.

        Both weigh bm25 by `keyword_weight` and semantic similarity by the rest: the two rankings are rarely
        equally good (plain RRF, weight 0.5, treats them as if they were).
        """
        fused: dict[int, float] = {}
        for ranking, weight in ((keyword, self.keyword_weight), (semantic, 1.0 - self.keyword_weight)):
            if not ranking:
                continue
            # the floor is the pool's last candidate; a short list (small store) is not evidence that its
            # last entry is irrelevant, so there the floor is zero
            hi = ranking[0][1]
            lo = ranking[-1][1] if len(ranking) >= pool else min(0.0, ranking[-1][1])
            for rank, (mid, score) in enumerate(ranking):
                if self.fusion == "rrf":
                    part = weight / (self.rrf_k + rank + 1)
                else:
                    part = weight * ((score - lo) / (hi - lo) if hi > lo else 1.0)
                fused[mid] = fused.get(mid, 0.0) + part
        return fused

    @_guard
    def list_recent(
        self,
        *,
        namespace: str | None = DEFAULT_NAMESPACE,
        limit: int = 10,
        agent: str | None = None,
        status: str | None = "active",
        include_quarantined: bool = False,
    ) -> list[Memory]:
        """Newest first; `status=None` lists both active and quarantined.

        `status="active"` lists what `recall` would serve: not the memories of agents whose trust fell below
        `min_trust`, unless `include_quarantined`.
        """
        if namespace is not None:
            check_name(namespace, "namespace")
        if agent is not None:
            check_name(agent, "agent id")
        if status not in (None, "active", "quarantined"):
            raise ConfigError(f"unknown status {status!r}; choose active or quarantined")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100_000:
            raise ConfigError(f"limit must be an integer from 1 to 100000, got {limit!r}")
        where, args = ["1=1"], []
        for col, val in (("namespace", namespace), ("agent_id", agent), ("status", status)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if status == "active" and not include_quarantined:
            untrusted = self._untrusted(time.time())
            if untrusted:
                where.append(f"agent_id NOT IN ({','.join('?' * len(untrusted))})")
                args += untrusted
        order = "ORDER BY created_at DESC, id DESC LIMIT ?"
        sql = f"SELECT {_COLUMNS} FROM memories WHERE {' AND '.join(where)} {order}"
        return [_memory(r) for r in self.conn.execute(sql, [*args, limit])]

    @_guard
    def related(self, memory_id: int, *, limit: int = 5, include_quarantined: bool = False) -> list[Memory]:
        """Graph neighbours first, then members of the same Leiden community, most similar first.

        Served like `recall`: no quarantined memories, nor those of agents below `min_trust`, unless
        `include_quarantined`."""
        with self._lock:
            base = self.get(memory_id)
            scores: dict[int, float] = dict(graph.neighbours(self.conn, memory_id))
            if len(scores) < limit:
                comm = self._communities(base.namespace)
                same = [
                    m
                    for m, c in comm.items()
                    if c == comm.get(memory_id) and m != memory_id and m not in scores
                ]
                idx = self._index(base.namespace)
                vec = idx.vectors([memory_id])
                if same and vec is not None:
                    mat = idx.vectors(same)
                    sims = vectors.similarity(self.embedder, vec[0] if self.embedder.dense else vec, mat)
                    for m, s in zip(same, sims, strict=False):
                        scores[m] = float(s) * 0.5  # below any direct edge of similar strength
            rows = self._rows(scores)
            untrusted = set() if include_quarantined else set(self._untrusted(time.time()))
            out = [
                replace(rows[m], score=s)
                for m, s in sorted(scores.items(), key=lambda kv: -kv[1])
                if m in rows
                and (include_quarantined or (rows[m].status == "active" and rows[m].agent not in untrusted))
            ]
            return out[:limit]

    def _communities(self, namespace: str) -> dict[int, int]:
        """Leiden partition of a namespace, recomputed only after the database changed."""
        key = (namespace, db.generation(self.conn))
        if self._community_cache.get(namespace, (None, None))[0] != key:
            self._community_cache[namespace] = (key, graph.communities(self.conn, namespace))
        return self._community_cache[namespace][1]

    @_guard
    def communities(self, namespace: str = DEFAULT_NAMESPACE) -> list[dict[str, Any]]:
        """Leiden communities of a namespace, largest first, each with its most frequent entities."""
        with self._lock:
            comm = self._communities(namespace)
            groups: dict[int, list[int]] = {}
            for m, c in comm.items():
                groups.setdefault(c, []).append(m)
            out = []
            for c, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
                marks = ",".join("?" * len(members))
                top = self.conn.execute(
                    f"SELECT entity, count(*) n FROM entities WHERE memory_id IN ({marks}) GROUP BY entity "
                    "ORDER BY n DESC, entity LIMIT 5",
                    members,
                ).fetchall()
                out.append(
                    {"community": c, "size": len(members), "entities": [e for e, _ in top], "ids": members}
                )
            return out

    @_guard
    def trust_report(self, agent: str | None = None) -> list[dict[str, Any]]:
        if agent is not None:
            check_text(agent, "agent id")
        return trust.report(self.conn, time.time(), agent)

    @_guard
    def stats(self) -> dict[str, Any]:
        c = self.conn
        by_status = dict(c.execute("SELECT status, count(*) FROM memories GROUP BY status").fetchall())
        namespaces = dict(c.execute("SELECT namespace, count(*) FROM memories GROUP BY namespace").fetchall())
        return {
            "path": str(self.path) if self.path else ":memory:",
            "embedder": self.embedder.name,
            "memories": sum(by_status.values()),
            "active": by_status.get("active", 0),
            "quarantined": by_status.get("quarantined", 0),
            "namespaces": namespaces,
            "agents": c.execute("SELECT count(*) FROM agents").fetchone()[0],
            "edges": c.execute("SELECT count(*) FROM edges").fetchone()[0],
            "embeddings": c.execute("SELECT count(*) FROM embeddings").fetchone()[0],
            "served": self.feedback.served(),
            "bytes": sum(p.stat().st_size for p in self.files()),
        }

    # ------------------------------------------------------------------ erase
    @_guard
    def forget(
        self,
        *,
        ids: Iterable[int] | None = None,
        query: str | None = None,
        tag: str | None = None,
        agent: str | None = None,
        namespace: str | None = None,
        requester: str = trust.USER,
        owner: str | None = None,
        dry_run: bool = False,
    ) -> Any:
        """Erase memories and every trace of them; returns a `ForgetReceipt` (see `memory_store.erase`).

        Selectors combine with AND; `owner` restricts erasure to one agent's memories (the MCP policy).
        """
        from memory_store import erase

        with self._lock:
            chosen = erase.select_ids(
                self, ids=ids, query=query, tag=tag, agent=agent, namespace=namespace, owner=owner
            )
            return erase.forget(self, chosen, requester=requester, dry_run=dry_run)

    @_guard
    def compact(self) -> bool:
        """Checkpoint, VACUUM and truncate both WALs; False if another process's reader held a WAL."""
        with self._lock:
            return db.compact(self.conn) and self.feedback.compact()

    # ------------------------------------------------------------------ export / import
    @_guard
    def export_jsonl(self, dest: str | Path, *, namespace: str | None = None) -> int:
        """Write every memory (with provenance and status) as JSON lines, atomically and owner-only (0600);
        returns the count."""
        target = os.path.realpath(dest)
        ours = [self.path, self.feedback.path, self.feedback.fallback] if self.path else []
        files = {os.path.realpath(f"{f}{end}") for f in ours if f for end in ("", "-wal", "-shm", "-journal")}
        if target in files:  # the rename would replace the database it is reading with its export
            raise ConfigError(f"{dest} is one of this store's database files; export to another path")
        n, now = 0, time.time()
        distrusted = set(self._untrusted(now))
        with atomic_path(dest, private=True) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for m in self.iter_memories(namespace=namespace):
                d = m.to_dict()
                for k in ("score", "trust", "content_hash"):
                    d.pop(k)
                if m.agent in distrusted and m.status == "active":
                    # its agent's trust (rebuilt from events, which are not exported) would start afresh in the
                    # restored store and serve it again: it is restored quarantined, as the trust layer left it
                    d["status"], d["flags"] = "quarantined", [*d.get("flags", []), "agent_distrusted"]
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
                n += 1
        return n

    def iter_memories(self, *, namespace: str | None = None) -> Iterator[Memory]:
        sql, args = f"SELECT {_COLUMNS} FROM memories", []
        if namespace is not None:
            sql, args = sql + " WHERE namespace = ?", [namespace]
        for row in self.conn.execute(sql + " ORDER BY id", args).fetchall():
            yield _memory(row)

    def import_jsonl(self, src: str | Path, *, namespace: str | None = None) -> dict[str, int]:
        """Restore memories exported by `export_jsonl` (duplicates per namespace are skipped).

        Every line is checked before anything is written: a bad line imports nothing and is named
        (`FILE:LINE: reason`)."""
        return self._import(_read_jsonl(src, namespace))

    def import_records(self, records: Iterable[dict[str, Any] | str], *, batch: int = 5000) -> dict[str, int]:
        """Bulk insert, one transaction per batch (a trusted restore: provenance and status kept as given).

        This is the path for restores and benchmarks; it does not run the per-write trust checks of
        `remember`, so use it only for data the user already vouches for. Graph edges are not built here.
        Every record is checked first, so a bad one (named `record N`) imports nothing.
        """
        items = [
            (f"record {k}", {"content": r} if isinstance(r, str) else r) for k, r in enumerate(records, 1)
        ]
        return self._import(items, batch=batch)

    def _import_row(self, r: Any, now: float) -> tuple[Any, ...]:
        """One record as an `_INSERT` row, or `ConfigError` saying what is wrong with it."""
        if not isinstance(r, dict) or "content" not in r:
            raise ConfigError("expected an object with 'content'")
        content, tags = self._validate(r["content"], r.get("tags", ()), r.get("importance", 5))
        ns = check_name(r.get("namespace", DEFAULT_NAMESPACE), "namespace")
        ag = check_name(r.get("agent", trust.USER), "agent id")
        status = r.get("status", "active")
        if status not in ("active", "quarantined"):
            raise ConfigError(f"invalid status {status!r}; use active or quarantined")
        flags = r.get("flags", [])
        if not isinstance(flags, list) or not all(isinstance(f, str) and T.is_unicode(f) for f in flags):
            raise ConfigError(f"flags must be a list of strings, got {flags!r}"[:200])
        created = _timestamp(r.get("created_at", now), "created_at")
        return (
            ns,
            content,
            T.content_hash(content),
            json.dumps(tags),
            ag,
            check_text(r.get("session", ""), "session"),
            check_text(r.get("transport", "import"), "transport"),
            r.get("importance", 5),
            status,
            json.dumps(flags),
            created,
            _timestamp(r.get("updated_at", created), "updated_at"),
            T.word_count(content),
        )

    @_guard
    def _import(self, items: list[tuple[str, Any]], *, batch: int = 5000) -> dict[str, int]:
        """Check every (where, record), then insert in batches (each one transaction)."""
        now = time.time()
        pending = []
        for where, r in items:
            try:
                pending.append(self._import_row(r, now))
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}; nothing was imported") from e
        added = skipped = 0
        with self._lock:
            for start in range(0, len(pending), batch):
                try:
                    a, s = self._import_batch(pending[start : start + batch], now)
                except (sqlite3.DatabaseError, IntegrityError) as e:
                    if not added:
                        raise
                    err = e if isinstance(e, IntegrityError) else db.database_error(self.path, e)
                    raise IntegrityError(
                        f"{err}; {added} of {len(pending)} memories were imported before this: re-run the "
                        "import to add the rest (duplicates are skipped)"
                    ) from e
                added, skipped = added + a, skipped + s
        return {"added": added, "skipped": skipped}

    def _import_batch(self, pending: list[tuple[Any, ...]], now: float) -> tuple[int, int]:
        """Insert checked rows in one transaction; returns (added, skipped as duplicates)."""
        added = skipped = 0
        vecs = self._encode([p[1] for p in pending]) if self.embedder.dense else None
        with db.transaction(self.conn, busy_timeout=self.busy_timeout):
            for ag in {p[4] for p in pending}:
                trust.ensure_agent(self.conn, ag, now)
            new_ids, new_vecs, ents, in_sessions = [], [], [], []
            for k, p in enumerate(pending):
                cur = self.conn.execute(_INSERT, p)
                if cur.rowcount:
                    added += 1
                    new_ids.append(int(cur.lastrowid or 0))
                    if p[5]:
                        in_sessions.append(new_ids[-1])
                    ents += [(new_ids[-1], e) for e in T.entities(p[1])]
                    if vecs is not None:
                        new_vecs.append(vecs[k])
                else:
                    skipped += 1
            if vecs is not None and new_ids:
                vectors.insert_embeddings(self.conn, self.embedder, new_ids, new_vecs)
            self.conn.executemany("INSERT OR IGNORE INTO entities (memory_id, entity) VALUES (?, ?)", ents)
            context.refresh(self.conn, context.around(self.conn, in_sessions))
        return added, skipped
