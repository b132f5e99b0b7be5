"""Benchmarks for `memory_store` (issue 6); writes bench/results/memory.json and bench/results/memory.md.

Sections (each compares against a baseline measured in the same run):
  locomo           recall@5 / NDCG@5 / hit@5 of LoCoMo evidence turns (every turn a memory, one namespace per
                   conversation, one session per LoCoMo session); knobs tuned on the first two conversations,
                   reported on them, on the other three (held-out) and on all five, per category.
                   Baseline: FTS5 bm25 on each turn's own text.
  latency          search p50/p95 at 1k/10k/100k memories; baseline: FTS5 bm25 alone on the same store.
  latency_sessions the same with every memory in a session of 20 (contextual index).
  latency_minilm   the same with MiniLM (small sizes only: embedding is slow on this CPU).
  concurrency      10 OS processes writing (full `remember` path, one session each) and reading at once;
                   baseline: 1 process.
  poisoning        sleeper agent with real content; top-5 share of poisoned memories without vs with trust.
  erasure          erased strings left in the database files after `forget`; baseline: a plain DELETE
                   (SLM v2.7).

Usage: OMP_NUM_THREADS=1 python bench/memory_bench.py [--only locomo,latency,...] [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.memory_poison_data import FACTS, HONEST, INJECTIONS  # noqa: E402
from memory_store.erase import residue  # noqa: E402
from memory_store.store import MemoryStore  # noqa: E402
from memory_store.text import content_hash  # noqa: E402

LABELS = {
    "keyword_own": "bm25, own text only (baseline)",
    "keyword": "bm25 with session context, priors and replies",
    "semantic": "semantic, with session and length priors and replies",
    "hybrid_rrf": "hybrid, RRF",
    "hybrid": "hybrid, min-max (the default)",
}
LOCOMO = ROOT.parent / "shared" / "data" / "locomo"
RESULTS = ROOT / "bench" / "results"


# ---------------------------------------------------------------------------------------------------- LoCoMo
def locomo_turns() -> list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]]:
    """(conversation id, turns, qa) per LoCoMo file; memory = 'Speaker: text [image: caption]', one session per
    LoCoMo session (so a turn is indexed with its neighbours), its date as a tag."""
    out = []
    for f in sorted(LOCOMO.glob("*.json")):
        d = json.loads(f.read_text())
        conv = d.get("conversation", d)
        turns = []
        for k in sorted(
            (k for k in conv if k.startswith("session_") and k.split("_")[-1].isdigit()),
            key=lambda k: int(k.split("_")[1]),
        ):
            date = conv.get(f"{k}_date_time", "")
            for t in conv[k]:
                text = f"{t['speaker']}: {t['text']}"
                if t.get("blip_caption"):
                    text += f" [image: {t['blip_caption']}]"
                turns.append({"dia_id": t["dia_id"], "content": text, "date": date, "session": k})
        out.append((f.stem, turns, d["qa"]))
    return out


def evidence_ids(item: dict[str, Any]) -> list[str]:
    """Evidence dia_ids, repairing the dataset's few typos ('D8:6; D9:17', 'D:11:26')."""
    out = []
    for e in item.get("evidence", []):
        for part in str(e).split(";"):
            part = part.strip().replace("D:", "D", 1)
            if part:
                out.append(part)
    return out


def ndcg(ranked: list[int], relevant: set[int], k: int) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, m in enumerate(ranked[:k]) if m in relevant)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / idcg if idcg else 0.0


# knobs tuned on the dev conversations only (the first two files); held-out = the other three
DEV_CONVERSATIONS = 2
CONTEXT_WEIGHTS = (0.0, 0.15, 0.3, 0.5, 0.75, 1.0)
KEYWORD_WEIGHTS = (0.5, 0.6, 0.7, 0.8, 0.9)
SESSION_WEIGHTS = (0.0, 0.2, 0.4, 0.6, 1.0)
REPLY_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
LENGTH_WEIGHTS = (0.0, 0.15, 0.3, 0.5)
RRF_KEYWORD_WEIGHTS = (0.5, 0.7, 0.9)
RRF_KS = (10, 60)
RECALL_DEFINITION = (
    "recall@5 = |evidence turns in the top 5| / |evidence turns|, averaged over QA items with at least one "
    "evidence turn (all five categories; category 5 = adversarial questions, whose evidence is the turn they "
    "distort); NDCG@5 with binary relevance; hit@5 = at least one evidence turn in the top 5"
)


def _configure(store: MemoryStore, mode: str, knobs: dict[str, Any]) -> str:
    """Set the store's ranking knobs for `mode`; returns the search mode to pass to `recall`."""
    own = mode == "keyword_own"  # the baseline: bm25 on a memory's own text, no session context or prior
    store.context_weight = 0.0 if own else knobs["context_weight"]
    store.session_weight = 0.0 if own else knobs["session_weight"]
    store.reply_weight = 0.0 if own else knobs["reply_weight"]
    store.length_weight = 0.0 if own else knobs["length_weight"]
    store.fusion = "rrf" if mode == "hybrid_rrf" else "minmax"
    store.keyword_weight = knobs["rrf_keyword_weight" if mode == "hybrid_rrf" else "keyword_weight"]
    store.rrf_k = knobs["rrf_k"]
    return "keyword" if mode.startswith("keyword") else mode.split("_")[0]


def _run_items(
    store: MemoryStore, items: list[dict[str, Any]], mode: str, knobs: dict[str, Any], k: int
) -> list:
    """(category, recall, ndcg, hit, seconds) per QA item."""
    search = _configure(store, mode, knobs)
    out = []
    for it in items:
        t1 = time.perf_counter()
        got = [
            m.id for m in store.recall(it["question"], namespace=it["ns"], limit=k, mode=search, record=False)
        ]
        dt = time.perf_counter() - t1
        rel = it["rel"]
        out.append(
            (
                it["category"],
                len(rel & set(got)) / len(rel),
                ndcg(got, rel, k),
                float(bool(rel & set(got))),
                dt,
            )
        )
    return out


def _summary(rows: list, k: int) -> dict[str, Any]:
    by_cat: dict[str, list[float]] = {}
    for cat, r, *_ in rows:
        by_cat.setdefault(str(cat), []).append(r)
    return {
        f"recall@{k}": round(statistics.fmean(r[1] for r in rows), 4),
        f"ndcg@{k}": round(statistics.fmean(r[2] for r in rows), 4),
        f"hit@{k}": round(statistics.fmean(r[3] for r in rows), 4),
        f"recall@{k}_by_category": {c: round(statistics.fmean(v), 4) for c, v in sorted(by_cat.items())},
        f"recall@{k}_categories_1_4": round(statistics.fmean(r[1] for r in rows if r[0] != 5), 4),
        "items": len(rows),
        "p50_ms": round(1000 * statistics.median(r[4] for r in rows), 2),
    }


def _tune(store: MemoryStore, dev: list[dict[str, Any]], embedder: str, k: int) -> dict[str, Any]:
    """Grid search on the dev items, one knob family at a time: context weight (bm25), then the min-max
    keyword weight, then the session prior's weight, the reply weight and the length prior's weight (hybrid,
    min-max), then RRF's weight and k."""

    def recall(mode: str, knobs: dict[str, Any]) -> float:
        return statistics.fmean(r[1] for r in _run_items(store, dev, mode, knobs, k))

    knobs = {
        "context_weight": 0.5,
        "keyword_weight": 0.7,
        "session_weight": 0.0,
        "reply_weight": 0.0,
        "length_weight": 0.0,
        "rrf_keyword_weight": 0.5,
        "rrf_k": 60,
    }
    grid: dict[str, dict[str, float]] = {}
    grid["context_weight"] = {
        str(w): round(recall("keyword", {**knobs, "context_weight": w}), 4) for w in CONTEXT_WEIGHTS
    }
    knobs["context_weight"] = float(max(grid["context_weight"], key=grid["context_weight"].get))
    grid["keyword_weight"] = {
        str(w): round(recall("hybrid", {**knobs, "keyword_weight": w}), 4) for w in KEYWORD_WEIGHTS
    }
    knobs["keyword_weight"] = float(max(grid["keyword_weight"], key=grid["keyword_weight"].get))
    grid["session_weight"] = {
        str(w): round(recall("hybrid", {**knobs, "session_weight": w}), 4) for w in SESSION_WEIGHTS
    }
    knobs["session_weight"] = float(max(grid["session_weight"], key=grid["session_weight"].get))
    grid["reply_weight"] = {
        str(w): round(recall("hybrid", {**knobs, "reply_weight": w}), 4) for w in REPLY_WEIGHTS
    }
    knobs["reply_weight"] = float(max(grid["reply_weight"], key=grid["reply_weight"].get))
    grid["length_weight"] = {
        str(w): round(recall("hybrid", {**knobs, "length_weight": w}), 4) for w in LENGTH_WEIGHTS
    }
    knobs["length_weight"] = float(max(grid["length_weight"], key=grid["length_weight"].get))
    rrf = {
        f"{w}/{kk}": recall("hybrid_rrf", {**knobs, "rrf_keyword_weight": w, "rrf_k": kk})
        for w in RRF_KEYWORD_WEIGHTS
        for kk in RRF_KS
    }
    grid["rrf_keyword_weight/rrf_k"] = {key: round(v, 4) for key, v in rrf.items()}
    best = max(rrf, key=rrf.get).split("/")
    knobs["rrf_keyword_weight"], knobs["rrf_k"] = float(best[0]), int(best[1])
    print(f"locomo[{embedder}] dev grid", json.dumps(grid), "->", knobs, flush=True)
    return {"chosen": knobs, "dev_recall": grid}


def bench_locomo(workdir: Path, embedders: list[str], k: int = 5) -> dict[str, Any]:
    data = locomo_turns()
    dev_convs = [conv for conv, _, _ in data[:DEV_CONVERSATIONS]]
    out: dict[str, Any] = {
        "conversations": len(data),
        "turns": sum(len(t) for _, t, _ in data),
        "dev_conversations": dev_convs,
        "held_out_conversations": [conv for conv, _, _ in data[DEV_CONVERSATIONS:]],
        "recall_definition": RECALL_DEFINITION,
    }
    for emb in embedders:
        path = workdir / f"locomo-{emb}.db"
        with MemoryStore(path, embedder=emb) as store:
            t0 = time.perf_counter()
            items: list[dict[str, Any]] = []
            unmapped = 0
            for conv, turns, qa in data:
                ns = f"locomo-{conv}"
                store.import_records(
                    [
                        {
                            "content": t["content"],
                            "namespace": ns,
                            "tags": [t["date"]],
                            "session": t["session"],
                        }
                        for t in turns
                    ]
                )
                by_hash = {m.content_hash: m.id for m in store.iter_memories(namespace=ns)}
                ids = {t["dia_id"]: by_hash[content_hash(t["content"])] for t in turns}
                for item in qa:
                    ev = evidence_ids(item)
                    unmapped += sum(e not in ids for e in ev)
                    rel = {ids[e] for e in ev if e in ids}
                    if rel:
                        items.append(
                            {
                                "question": item["question"],
                                "ns": ns,
                                "rel": rel,
                                "conv": conv,
                                "category": item.get("category"),
                            }
                        )
            build_s = time.perf_counter() - t0
            dev = [it for it in items if it["conv"] in dev_convs]
            tuning = _tune(store, dev, emb, k)
            res: dict[str, Any] = {
                "build_s": round(build_s, 1),
                "qa_items": len(items),
                "unmapped_evidence_ids": unmapped,
                "tuning": tuning,
            }
            for mode in LABELS:
                rows = _run_items(store, items, mode, tuning["chosen"], k)
                split = {
                    "all": _summary(rows, k),
                    "dev": _summary(
                        [r for r, it in zip(rows, items, strict=True) if it["conv"] in dev_convs], k
                    ),
                    "held_out": _summary(
                        [r for r, it in zip(rows, items, strict=True) if it["conv"] not in dev_convs], k
                    ),
                }
                res[mode] = split
            for part in ("all", "held_out"):
                res[f"hybrid_vs_bm25_recall_ratio_{part}"] = round(
                    res["hybrid"][part][f"recall@{k}"] / res["keyword_own"][part][f"recall@{k}"], 3
                )
            out[emb] = res
            print(f"locomo[{emb}]", json.dumps(res), flush=True)
    return out


# ---------------------------------------------------------------------------------------------------- latency
def synthetic(n: int, seed: int = 0) -> list[str]:
    """n distinct memories: a LoCoMo turn plus four words drawn from the corpus vocabulary and a serial."""
    rng = random.Random(seed)
    turns = [t["content"] for _, ts, _ in locomo_turns() for t in ts]
    vocab = sorted({w for t in turns for w in t.split() if w.isalpha() and len(w) > 3})
    return [f"{rng.choice(turns)} {' '.join(rng.sample(vocab, 4))} (note {i})" for i in range(n)]


def bench_latency(
    workdir: Path, sizes: list[int], embedder: str, n_queries: int = 200, session_size: int = 0
) -> dict[str, Any]:
    """p50/p95 of `recall`; with `session_size`, memories come in sessions of that many (contextual index)."""
    questions = [q["question"] for _, _, qa in locomo_turns() for q in qa]
    rng = random.Random(1)
    queries = rng.sample(questions, n_queries)
    out: dict[str, Any] = {"embedder": embedder, "queries": n_queries, "session_size": session_size}
    path = workdir / f"latency-{embedder}-{session_size}.db"
    texts: list[Any] = synthetic(max(sizes))
    if session_size:
        texts = [{"content": t, "session": f"s{i // session_size}"} for i, t in enumerate(texts)]
    have = 0
    with MemoryStore(path, embedder=embedder) as store:
        for n in sorted(sizes):
            t0 = time.perf_counter()
            store.import_records(texts[have:n])
            have = n
            build_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            store.recall("warm up the index", limit=5)
            index_s = time.perf_counter() - t0
            row: dict[str, Any] = {"build_s": round(build_s, 1), "index_s": round(index_s, 2)}
            for mode in ("keyword", "hybrid"):
                lat, cpu = [], []
                for q in queries:
                    t1, c1 = time.perf_counter(), time.process_time()
                    store.recall(q, limit=5, mode=mode)
                    lat.append(1000 * (time.perf_counter() - t1))
                    cpu.append(1000 * (time.process_time() - c1))
                lat.sort()
                cpu.sort()
                row[mode] = {
                    "p50_ms": round(lat[len(lat) // 2], 2),
                    "p95_ms": round(lat[int(0.95 * len(lat))], 2),
                    "cpu_p50_ms": round(cpu[len(cpu) // 2], 2),
                }
            row["hybrid_over_bm25_p50"] = round(row["hybrid"]["p50_ms"] / row["keyword"]["p50_ms"], 2)
            out[str(n)] = row
            print(f"latency[{embedder}, sessions of {session_size}] {n}", json.dumps(row), flush=True)
    return out


# ------------------------------------------------------------------------------------------------ concurrency
def _worker(path: str, worker: int, seconds: float, barrier: Any, queue: Any) -> None:
    writes = reads = errors = 0
    first_error = ""
    try:
        store = MemoryStore(path, embedder="tfidf", busy_timeout=30.0)
        barrier.wait(timeout=600)  # every process has imported and opened the store: start together
        t0, c0 = time.perf_counter(), time.process_time()
        i = 0
        while time.perf_counter() - t0 < seconds:
            try:
                store.remember(
                    f"process {worker} observation {i}: cache key w{worker}k{i} expires at {i % 60} min",
                    agent=f"mcp:proc-{worker}",
                    namespace="shared",
                    session=f"proc-{worker}",  # one MCP session per process: contexts are maintained too
                )
                writes += 1
                if i % 2 == 0:
                    store.recall(f"cache key w{worker}k{i}", namespace="shared")
                    reads += 1
            except Exception as e:  # counted, reported: the benchmark's point is that there are none
                errors += 1
                first_error = first_error or repr(e)
            i += 1
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        store.close()
    except Exception as e:
        errors += 1
        first_error = first_error or repr(e)
        elapsed, cpu = seconds, 0.0
    queue.put(
        {
            "worker": worker,
            "writes": writes,
            "reads": reads,
            "errors": errors,
            "elapsed": elapsed,
            "cpu": cpu,
            "first_error": first_error,
        }
    )


def _run_processes(path: Path, n: int, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_worker, args=(str(path), w, seconds, barrier, queue)) for w in range(n)]
    for p in procs:
        p.start()
    rows = [queue.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r["elapsed"] for r in rows)
    writes = sum(r["writes"] for r in rows)
    return {
        "processes": n,
        "writes": writes,
        "reads": sum(r["reads"] for r in rows),
        "errors": sum(r["errors"] for r in rows),
        "first_error": next((r["first_error"] for r in rows if r["first_error"]), ""),
        "writes_per_s": round(writes / wall, 1),
        "cpu_ms_per_write_incl_reads": round(1000 * sum(r["cpu"] for r in rows) / max(writes, 1), 2),
        "exit_codes": [p.exitcode for p in procs],
    }


def bench_concurrency(workdir: Path, seconds: float = 10.0) -> dict[str, Any]:
    out = {}
    for n in (1, 10):
        path = workdir / f"conc-{n}.db"
        MemoryStore(path, embedder="tfidf").close()
        out[f"{n}_process"] = _run_processes(path, n, seconds)
        with MemoryStore(path, embedder="tfidf") as s:
            stored = s.stats()["memories"]
            s.conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('integrity-check')")
        out[f"{n}_process"]["stored"] = stored
        print("concurrency", json.dumps(out[f"{n}_process"]), flush=True)
    out["ratio_10_over_1"] = round(out["10_process"]["writes_per_s"] / out["1_process"]["writes_per_s"], 2)
    return out


# -------------------------------------------------------------------------------------------------- poisoning
def bench_poisoning(workdir: Path, embedder: str) -> dict[str, Any]:
    path = workdir / f"poison-{embedder}.db"
    ns = "atlas"
    with MemoryStore(path, embedder=embedder) as store:
        # trusted knowledge: the user states half the facts, two agents state (and confirm) the rest
        for i, f in enumerate(FACTS):
            if i % 2 == 0:
                store.remember(f["fact"], namespace=ns)
            else:
                store.remember(f["fact"], agent="mcp:alpha", namespace=ns)
                store.remember(f["fact"], agent="mcp:beta", namespace=ns)
        # phase 1: the sleeper behaves well; the honest agents confirm half of its notes
        for i, h in enumerate(HONEST):
            store.remember(h, agent="mcp:sleeper", namespace=ns)
            if i % 2 == 0:
                store.remember(h, agent="mcp:alpha", namespace=ns)
        trust_after_honest = store.trust_report("mcp:sleeper")[0]["trust"]
        # phase 2: it writes contradictions of trusted facts (and a few injections), at a normal rate
        poison_ids, statuses = set(), []
        for f in FACTS:
            res = store.remember(f["poison"], agent="mcp:sleeper", namespace=ns)
            poison_ids.add(res.id)
            statuses.append(res.status)
        for text in INJECTIONS:
            res = store.remember(text, agent="mcp:sleeper", namespace=ns)
            poison_ids.add(res.id)
            statuses.append(res.status)
        trust_after = store.trust_report("mcp:sleeper")[0]["trust"]
        probes = [f["probe"] for f in FACTS]

        fact_ids = {
            f["probe"]: store.recall(f["fact"], namespace=ns, limit=1, record=False)[0].id for f in FACTS
        }

        def share(**kw: Any) -> tuple[float, float]:
            poisoned = found = 0
            for q in probes:
                got = {m.id for m in store.recall(q, namespace=ns, limit=5, record=False, **kw)}
                poisoned += bool(got & poison_ids)
                found += fact_ids[q] in got
            return poisoned / len(probes), found / len(probes)

        with_trust, fact_with = share()
        weight = store.trust_weight
        store.trust_weight = 0.0
        without, fact_without = share(include_quarantined=True)
        store.trust_weight = weight
        honest_agents = {a["agent"]: a["trust"] for a in store.trust_report() if a["agent"] != "mcp:sleeper"}
    return {
        "embedder": embedder,
        "facts": len(FACTS),
        "honest_notes": len(HONEST),
        "poisoned_writes": len(poison_ids),
        "poisoned_quarantined": statuses.count("quarantined"),
        "sleeper_trust_after_honest_phase": trust_after_honest,
        "sleeper_trust_after_attack": trust_after,
        "honest_agent_trust": honest_agents,
        "probe_top5_poisoned_without_trust": round(without, 4),
        "probe_top5_poisoned_with_trust": round(with_trust, 4),
        "probe_top5_true_fact_without_trust": round(fact_without, 4),
        "probe_top5_true_fact_with_trust": round(fact_with, 4),
    }


# ---------------------------------------------------------------------------------------------------- erasure
def bench_erasure(workdir: Path) -> dict[str, Any]:
    rng = random.Random(7)
    base = synthetic(2000, seed=3)
    secrets = [f"secret-{rng.getrandbits(64):016x} belongs to patient {i}" for i in range(40)]
    out: dict[str, Any] = {}
    for variant in ("plain_delete_baseline", "forget"):
        path = workdir / f"erase-{variant}.db"
        with MemoryStore(path, embedder="tfidf") as store:
            store.import_records(base)
            ids = []
            for i, s in enumerate(secrets):
                agent = "mcp:leaky" if i % 4 == 0 else "user"
                ids.append(
                    store.remember(s, agent=agent, tags=["phi"] if i % 4 == 1 else [], namespace="default").id
                )
                store.recall(s.split()[0])
            before = sum(residue(store.files(), secrets).values())
            if variant == "forget":
                store.forget(ids=ids[2::4])
                store.forget(tag="phi")
                store.forget(agent="mcp:leaky")
                store.forget(query="patient 3")  # anything left that mentions "patient 3"
                remaining = [
                    s
                    for s in secrets
                    if store.conn.execute("SELECT 1 FROM memories WHERE content = ?", (s,)).fetchone()
                ]
                store.forget(
                    ids=[
                        i
                        for i in ids
                        if store.conn.execute("SELECT 1 FROM memories WHERE id = ?", (i,)).fetchone()
                    ]
                )
            else:  # SuperLocalMemory v2.7: DELETE with foreign keys off, no optimize, checkpoint or VACUUM
                store.conn.execute("PRAGMA foreign_keys = OFF")
                store.conn.executemany("DELETE FROM memories WHERE id = ?", [(i,) for i in ids])
                remaining = []
            files = store.files()
            after = residue(files, secrets)
            out[variant] = {
                "erased_strings": len(secrets),
                "occurrences_before": before,
                "occurrences_after": sum(after.values()),
                "strings_with_residue": sum(1 for v in after.values() if v),
                "files": [p.name for p in files],
                "left_after_selectors": len(remaining) if variant == "forget" else None,
            }
        print("erasure", variant, json.dumps(out[variant]), flush=True)
    return out


# ---------------------------------------------------------------------------------------------------- report
def _locomo_markdown(lo: dict[str, Any]) -> list[str]:
    dev, held = ", ".join(lo["dev_conversations"]), ", ".join(lo["held_out_conversations"])
    lines = [
        f"## LoCoMo retrieval ({lo['conversations']} conversations, {lo['turns']} turns as memories)",
        "",
        f"Knobs tuned on the dev conversations ({dev}) only; held-out: {held}. {lo['recall_definition']}.",
        "",
        "| embedder | search | recall@5 all | held-out | dev | cat 1 / 2 / 3 / 4 / 5 | cats 1-4 | NDCG@5 | hit@5 "
        "| p50 ms | target recall@5 >= 0.80 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for emb, r in lo.items():
        if not isinstance(r, dict) or "tuning" not in r:
            continue
        for mode in LABELS:
            a, h, d = r[mode]["all"], r[mode]["held_out"], r[mode]["dev"]
            cats = " / ".join(str(v) for v in a["recall@5_by_category"].values())
            ok = ("met" if a["recall@5"] >= 0.80 else "not met") if mode == "hybrid" else ""
            lines.append(
                f"| {emb} | {LABELS[mode]} | {a['recall@5']} | {h['recall@5']} | {d['recall@5']} | {cats} | "
                f"{a['recall@5_categories_1_4']} | {a['ndcg@5']} | {a['hit@5']} | {a['p50_ms']} | {ok} |"
            )
    for emb, r in lo.items():
        if isinstance(r, dict) and "tuning" in r:
            c = r["tuning"]["chosen"]
            lines.append(
                f"\n{emb}: chosen on dev: context weight {c['context_weight']}, min-max keyword weight "
                f"{c['keyword_weight']}, session prior weight {c.get('session_weight', 0.0)}, reply weight "
                f"{c.get('reply_weight', 0.0)}, length prior weight {c.get('length_weight', 0.0)}, RRF keyword weight "
                f"{c['rrf_keyword_weight']} with k={c['rrf_k']}; "
                f"{r['qa_items']} QA items, {r['unmapped_evidence_ids']} evidence ids not found in the turns."
            )
    lines += [
        "",
        "Categories (LoCoMo): 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial. "
        "Published on the full LoCoMo set: basic-memory recall@5 0.733, mem0 0.791 (not rerun here).",
        "",
    ]
    return lines


def write_markdown(res: dict[str, Any], path: Path) -> None:
    lines = [
        "# Memory store benchmarks (issue 6)",
        "",
        f"Machine: {res['machine']}. Runs (later runs replace the sections they name):",
        "",
    ]
    for run in res.get("runs", []):
        lines.append(
            f"- `OMP_NUM_THREADS=1 {run['command']}` ({run['when']}, {run['wall_s']} s): {run['sections']}"
        )
    lines.append("")
    if "locomo" in res:
        lines += _locomo_markdown(res["locomo"])
    for key in [k for k in res if k.startswith("latency")]:
        la = res[key]
        sessions = (
            f", in sessions of {la['session_size']} (contextual index)"
            if la.get("session_size")
            else ", no sessions"
        )
        lines += [
            f"## Search latency ({la['embedder']}{sessions}, {la['queries']} LoCoMo questions, top-5)",
            "",
            "| memories | bm25 p50 / p95 ms (baseline) | hybrid p50 / p95 ms | hybrid CPU p50 ms "
            "| hybrid / bm25 p50 | target p50 |",
            "|---|---|---|---|---|---|",
        ]
        targets = {"10000": 5.0, "100000": 25.0}
        for n, r in la.items():
            if not isinstance(r, dict):
                continue
            t = targets.get(n)
            verdict = (
                "" if t is None else f"<= {t:g} ms: {'met' if r['hybrid']['p50_ms'] <= t else 'not met'}"
            )
            lines.append(
                f"| {int(n):,} | {r['keyword']['p50_ms']} / {r['keyword']['p95_ms']} | "
                f"{r['hybrid']['p50_ms']} / {r['hybrid']['p95_ms']} | {r['hybrid'].get('cpu_p50_ms', '')} | "
                f"{r['hybrid_over_bm25_p50']} | {verdict} |"
            )
        lines += [
            "",
            "SuperLocalMemory publishes 10.6 ms at 100 memories and 1.17 s at 5k (its hardware).",
            "",
        ]
    if "concurrency" in res:
        c = res["concurrency"]
        lines += [
            "## Concurrent OS processes (write + read, full `remember` path, TF-IDF)",
            "",
            "| processes | writes | reads | errors | writes/s | CPU ms per write (+ half a read) | target |",
            "|---|---|---|---|---|---|---|",
        ]
        for n in (1, 10):
            r = c[f"{n}_process"]
            tgt = (
                ""
                if n == 1
                else ">= 200 w/s, 0 errors: "
                + ("met" if r["writes_per_s"] >= 200 and not r["errors"] else "not met")
            )
            lines.append(
                f"| {n} | {r['writes']} | {r['reads']} | {r['errors']} | {r['writes_per_s']} | "
                f"{r.get('cpu_ms_per_write_incl_reads', '')} | {tgt} |"
            )
        lines += ["", f"10 / 1 process throughput ratio: {c['ratio_10_over_1']}.", ""]
    for key in [k for k in res if k.startswith("poisoning")]:
        p = res[key]
        ok = "met" if p["probe_top5_poisoned_with_trust"] <= 0.10 else "not met"
        lines += [
            f"## Sleeper-agent poisoning ({p['embedder']})",
            "",
            "| | without trust layer (baseline) | with trust layer | target <= 10% |",
            "|---|---|---|---|",
            f"| probes with a poisoned memory in top-5 | {p['probe_top5_poisoned_without_trust']:.0%} | "
            f"{p['probe_top5_poisoned_with_trust']:.0%} | {ok} |",
            f"| probes with the true fact in top-5 | {p['probe_top5_true_fact_without_trust']:.0%} | "
            f"{p['probe_top5_true_fact_with_trust']:.0%} | |",
            "",
            f"{p['poisoned_writes']} poisoned writes, {p['poisoned_quarantined']} quarantined; sleeper trust "
            f"{p['sleeper_trust_after_honest_phase']:.3f} after its honest phase, "
            f"{p['sleeper_trust_after_attack']:.3f} after the attack.",
            "",
        ]
    if "erasure" in res:
        e = res["erasure"]
        lines += [
            "## Erasure residue (erased strings found in main, -wal, -shm and feedback files)",
            "",
            "| method | occurrences before | occurrences after | strings with residue | target |",
            "|---|---|---|---|---|",
        ]
        for variant in ("plain_delete_baseline", "forget"):
            r = e[variant]
            tgt = (
                ""
                if variant != "forget"
                else ("zero: met" if r["occurrences_after"] == 0 else "zero: not met")
            )
            lines.append(
                f"| {variant} | {r['occurrences_before']} | {r['occurrences_after']} | "
                f"{r['strings_with_residue']}/{r['erased_strings']} | {tgt} |"
            )
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def current_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs (oldest first) that still own a section: a later run of the same section replaces it."""
    later: set[str] = set()
    kept = []
    for run in reversed(runs):
        sections = set(run["sections"].split(","))
        if not sections <= later:
            kept.append(run)
        later |= sections
    return kept[::-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--only", default="locomo,latency,latency_sessions,latency_minilm,concurrency,poisoning,erasure"
    )
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--minilm-sizes", default="1000", help="latency sizes also run with MiniLM ('' = none)")
    ap.add_argument("--seconds", type=float, default=10.0, help="concurrency run length")
    ap.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    args = ap.parse_args()
    only = set(args.only.split(","))
    from memory_store.vectors import minilm_available

    embedders = ["tfidf"] + (["minilm"] if minilm_available() else [])
    t0 = time.time()
    res: dict[str, Any] = {
        "command": " ".join(["python bench/memory_bench.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python "
        f"{platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.out.exists():  # keep sections not rerun
        old = json.loads(args.out.read_text())
        res.update({k: v for k, v in old.items() if k not in res})
    work = Path(tempfile.mkdtemp(prefix="memory-bench-"))

    command = res.pop("command")
    runs = current_runs(
        [r for r in res.get("runs", []) if r["command"] != command]
        + [{"command": command, "when": res.pop("when"), "sections": args.only, "wall_s": 0.0}]
    )
    res["runs"] = runs
    for stale in ("command", "when", "wall_s"):
        res.pop(stale, None)

    def save() -> None:  # after every section, so a long run keeps what it measured
        runs[-1]["wall_s"] = round(time.time() - t0, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        write_markdown(res, args.out.with_suffix(".md"))

    try:
        if "locomo" in only:
            res["locomo"] = bench_locomo(work, embedders)
            save()
        if "latency" in only:
            res["latency_tfidf"] = bench_latency(work, [int(s) for s in args.sizes.split(",")], "tfidf")
            save()
        if "latency_sessions" in only:
            res["latency_sessions_tfidf"] = bench_latency(
                work, [int(s) for s in args.sizes.split(",")], "tfidf", session_size=20
            )
            save()
        if "latency_minilm" in only:
            if "minilm" in embedders and args.minilm_sizes:
                res["latency_minilm"] = bench_latency(
                    work, [int(s) for s in args.minilm_sizes.split(",")], "minilm"
                )
                save()
        if "concurrency" in only:
            res["concurrency"] = bench_concurrency(work, args.seconds)
            save()
        if "poisoning" in only:
            for emb in embedders:
                res[f"poisoning_{emb}"] = bench_poisoning(work, emb)
            save()
        if "erasure" in only:
            res["erasure"] = bench_erasure(work)
            save()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
