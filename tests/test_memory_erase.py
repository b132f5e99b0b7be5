"""Erasure: receipt, cascades, and a byte-level scan of main, -wal and -shm files."""

from __future__ import annotations

import pytest

from memory_store.erase import residue
from protect.errors import ConfigError

SECRET = "Zanzibar-quokka-7731 is the name of my private diary"


def fill(store):
    ids = [
        store.remember(f"Filler memory {i} about build systems and caches number {i}").id for i in range(30)
    ]
    secret = store.remember(SECRET, tags=["private"], agent="mcp:a").id
    store.remember(SECRET, agent="mcp:b")  # confirmation row + event
    store.remember("Zanzibar-quokka-7731 diary entries are written on Sundays", agent="mcp:a")
    store.recall("Zanzibar quokka diary")  # feedback rows
    return ids, secret


def test_forget_by_id_removes_every_trace(store, tmp_path):
    _, secret = fill(store)
    files = store.files()
    assert residue(files, ["quokka"])["quokka"] > 0
    receipt = store.forget(ids=[secret])
    assert receipt.ids == [secret] and len(receipt.content_hashes[0]) == 64
    c = receipt.counts
    assert c["memories"] == 1 and c["confirmations"] == 1 and c["feedback"] >= 1 and c["events"] >= 2
    assert c["entities"] >= 1 and c["trust_signal_links"] >= 1
    assert receipt.vacuumed and receipt.wal_truncated and receipt.residue_free
    for table, col in [
        ("embeddings", "memory_id"),
        ("entities", "memory_id"),
        ("events", "memory_id"),
        ("confirmations", "memory_id"),
        ("edges", "src"),
        ("edges", "dst"),
    ]:
        assert (
            store.conn.execute(f"SELECT count(*) FROM {table} WHERE {col} = ?", (secret,)).fetchone()[0] == 0
        )
    assert residue(store.files(), [SECRET])[SECRET] == 0
    assert store.recall("Zanzibar private diary", include_quarantined=True)[0].id != secret
    assert (tmp_path / "m.db-wal").stat().st_size == 0


@pytest.mark.parametrize(
    "selector",
    [{"query": "zanzibar quokka"}, {"tag": "private"}, {"agent": "mcp:a"}, {"namespace": "default"}],
)
def test_forget_selectors_leave_no_residue(store, selector):
    fill(store)
    before = {m.id: m.content for m in store.iter_memories()}
    receipt = store.forget(**selector)
    assert receipt.ids and receipt.residue_free
    erased = [before[i] for i in receipt.ids]
    assert SECRET in erased
    assert set(residue(store.files(), erased).values()) == {0}
    if selector.get("namespace") or selector.get("agent"):  # nothing about the diary survives
        assert residue(store.files(), ["quokka"]) == {"quokka": 0}


def test_forget_owner_policy_and_dry_run(store):
    _, secret = fill(store)
    assert store.forget(ids=[secret], owner="mcp:b").ids == []
    plan = store.forget(ids=[secret], dry_run=True)
    assert plan.ids == [secret] and store.get(secret)
    with pytest.raises(ConfigError):
        store.forget()


def test_wipe_feedback_alone(store):
    fill(store)
    assert store.feedback.served() > 0
    store.feedback.wipe()
    assert store.feedback.served() == 0 and store.stats()["memories"] == 32


def test_forget_by_a_long_query_needs_every_one_of_its_words(store):
    """A query of more than 32 words once kept only the first 32: a memory lacking the rest was erased."""
    words = " ".join(f"w{i:02d}" for i in range(32))
    kept = store.remember(f"{words} keepme").id
    assert store.forget(query=f"{words} differentword", dry_run=True).ids == []
    assert store.forget(query=f"{words} keepme", dry_run=True).ids == [kept]
