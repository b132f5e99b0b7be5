"""The TF-IDF write-path caches and the in-place sparse delta give exactly what recomputing gives."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from memory_store import vectors
from memory_store.store import MemoryStore


def test_tfidf_cached_rows_equal_fresh_encoding() -> None:
    texts = [f"process {i} observation: cache key w{i} expires at {i % 7} min" for i in range(40)]
    cached = vectors.TfidfEmbedder(n_features=2**12)
    first = cached.encode(texts[:30])
    again = cached.encode(texts[10:])  # 20 from the cache, 10 new
    fresh = vectors.TfidfEmbedder(n_features=2**12).encode(texts[10:])
    assert (again != fresh).nnz == 0 and again.dtype == fresh.dtype
    assert (first[10:] != fresh[:20]).nnz == 0


def test_growing_rows_match_vstack() -> None:
    rng = np.random.default_rng(0)
    parts = [
        sp.random(int(rng.integers(1, 5)), 50, density=0.2, format="csr", dtype=np.float32) for _ in range(30)
    ]
    rows = vectors._GrowingRows(50)
    for p in parts:
        rows.append(p)
    want = sp.vstack(parts, format="csr")
    assert rows.shape == want.shape
    assert (rows.csr() != want).nnz == 0
    cols = np.array([1, 7, 20, 49])
    w = rng.random(4)
    assert np.allclose(vectors._sparse_dot(rows, cols, w), vectors._sparse_dot(want, cols, w))


def test_incremental_index_equals_rebuilt(tmp_path) -> None:
    path = tmp_path / "m.db"
    with MemoryStore(path, embedder="tfidf") as writer, MemoryStore(path, embedder="tfidf") as reader:
        for i in range(60):
            writer.remember(f"note {i}: service s{i % 9} listens on port {8000 + i}", namespace="ns")
            reader.recall("service port", namespace="ns")  # the reader's index follows by appending
        with MemoryStore(path, embedder="tfidf") as fresh:
            q = fresh._encode(["which port does service s3 use"])
            assert reader._index("ns").search(q, 10) == fresh._index("ns").search(q, 10)
