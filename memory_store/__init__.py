"""Local memory shared by several agents: SQLite/FTS5 store, Bayesian trust, complete erasure, MCP server.

Based on SuperLocalMemory v2.7 (V. P. Bhardwaj, arXiv 2603.02240), with its known gaps fixed; see README.
Names are imported lazily so `protect memory --help` stays fast (torch is imported only for MiniLM search).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MemoryStore", "Memory", "WriteResult", "ForgetReceipt", "build_server"]

_LAZY = {
    "MemoryStore": "memory_store.store",
    "Memory": "memory_store.store",
    "WriteResult": "memory_store.store",
    "ForgetReceipt": "memory_store.erase",
    "build_server": "memory_store.server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'memory_store' has no attribute {name!r}")
