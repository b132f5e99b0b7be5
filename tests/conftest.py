"""Test-wide fixtures: user state in a temp dir, no network, small thread counts."""

from __future__ import annotations

import os
import socket

# Tiny test models run fastest on one thread, and a busy machine with oversubscribed threads slows them by 10x or
# more; set before torch is imported by any test module.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def protect_home(tmp_path, monkeypatch):
    """Every test gets its own PROTECT_HOME."""
    home = tmp_path / "protect-home"
    monkeypatch.setenv("PROTECT_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (
        host.startswith("127.") or host in ("localhost", "::1") or self.family == socket.AF_UNIX
    ):
        raise RuntimeError(f"tests must not use the network (tried {address!r})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection outside loopback fails loudly: tests never download."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture
def store(tmp_path):
    """A memory store on disk with the TF-IDF embedder (fast, no model files)."""
    from memory_store.store import MemoryStore

    with MemoryStore(tmp_path / "m.db", embedder="tfidf") as s:
        yield s
