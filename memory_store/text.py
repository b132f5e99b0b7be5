"""Text handling: safe FTS5 queries, content hashes, entities, and the content signals the trust layer reads.

SuperLocalMemory v2.7 scores writers only by behaviour (deletes, bursts, self-declared importance), so a
sleeper writing poisoned text at a normal rate gains trust. These pure functions add the content-level
evidence the design note asks for: instruction-like text aimed at agents, injected URLs, credentials, and
contradiction of an existing memory (same statement frame, different value or polarity). All are heuristics
without an LLM.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

OWN_TEXT = ("content", "tags")  # FTS5 columns of a memory's own text (not its neighbours' context)
_TOKEN = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"\b\d+(?:[.,:]\d+)*\b")
_NEGATIONS = frozenset(
    "not no never none nobody nothing neither nor cannot can't won't don't doesn't isn't aren't wasn't "
    "weren't shouldn't mustn't disabled disable off false".split()
)
STOPWORDS = frozenset(
    """a an and are as at be been being but by can could did do does doing for from had has have having he her
    hers him his how i if in into is it its itself just me my of on or our ours she so than that the their
    them then there these they this those to too very was we were what when where which while who whom why
    will with would you your yours yourself about after again against all am any because before below between
    both down during each few further here more most other out over own same should some such through under
    until up""".split()
)

_INSTRUCTION = re.compile(
    r"ignore (?:all |any |the )?(?:previous|prior|above|earlier)|disregard (?:all|any|the|previous|prior)"
    r"|(?:new|updated|override) (?:system )?instructions|system prompt|you are now|from now on,? "
    r"(?:you|always|never)"
    r"|(?:do not|don't|should not|shouldn't|never|must not) (?:tell|inform|mention|alert|notify|warn) the user"
    r"|without (?:telling|asking) the user"
    r"|(?:curl|wget)\s+\S+[^\n|]*\|\s*(?:ba|z)?sh|exfiltrat|send (?:the |all |any )?(?:secrets?|credentials?|"
    r"keys?|tokens?|passwords?|env|environment)|(?:assistant|agent|ai|llm)s? (?:must|should) "
    r"(?:always|never)",
    re.IGNORECASE,
)
_URL = re.compile(r"\b(?:https?|ftp)://([^\s/'\"<>]+)", re.IGNORECASE)
_CREDENTIAL = re.compile(
    r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}|\bsk-[A-Za-z0-9_-]{20,}"
    r"|\bxox[abpr]-[A-Za-z0-9-]{10,}|(?:password|passwd|secret|api[_-]?key|token)\s*[:=]\s*\S{6,}",
    re.IGNORECASE,
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_ENTITY = re.compile(r"\b(?:[A-Z][\w-]*(?:\s+[A-Z][\w-]*)*|[\w-]*\d[\w.-]*|[a-z]+(?:[_./][a-z0-9]+)+)\b")


def is_unicode(text: str) -> bool:
    """False for text with lone surrogates (undecodable argv bytes, `"\\ud800"` in JSON): UTF-8 cannot hold it,
    so SQLite would fail on it mid-write."""
    return _SURROGATE.search(text) is None


def drop_surrogates(text: str) -> str:
    """`text` without lone surrogates: a query may be cleaned, as it only ranks (writes refuse them instead)."""
    return _SURROGATE.sub("", text)


def normalize(text: str) -> str:
    """NFC, collapsed whitespace, stripped: the form that is hashed and stored."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_hash(text: str) -> str:
    """SHA-256 of the normalized text (hex); unique per namespace in the store."""
    return hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()


def tokens(text: str) -> list[str]:
    """Lower-case word tokens (Unicode letters and digits)."""
    return [t.lower() for t in _TOKEN.findall(text)]


def word_count(text: str) -> int:
    """Words as FTS5's unicode61 tokenizer counts them (runs of letters and digits): the length that bm25
    normalises by, and so the one the length prior (`MemoryStore.length_weight`) makes up for. Text with no
    separators (Chinese, `k=v` runs without spaces) counts its runs, as bm25 does."""
    return len(_TOKEN.findall(text))


def content_words(text: str) -> set[str]:
    return {t for t in tokens(text) if t not in STOPWORDS}


def fts_query(
    text: str, *, mode: str = "any", max_terms: int = 32, columns: tuple[str, ...] = ()
) -> str | None:
    """A MATCH expression built only from quoted word tokens, so no user text is FTS5 syntax.

    Every token becomes a double-quoted string (FTS5's own escaping), joined by OR (`mode="any"`, for ranking,
    the first `max_terms` only) or AND (`mode="all"`, for `forget` by query: every term, since dropping one would
    erase memories that lack it). Stopwords are dropped unless nothing else is left.
    `columns` (fixed names, never user text) restricts the match to those index columns.
    Returns None when the text has no word characters at all.
    """
    toks = tokens(text)
    kept = [t for t in toks if t not in STOPWORDS] or toks
    seen: list[str] = []
    for t in kept:
        if t not in seen:
            seen.append(t)
    if not seen:
        return None
    joiner = " OR " if mode == "any" else " AND "
    terms = seen[:max_terms] if mode == "any" else seen
    expr = joiner.join('"' + t.replace('"', '""') + '"' for t in terms)
    return f"{{{' '.join(columns)}}} : ({expr})" if columns else expr


def entities(text: str, *, limit: int = 20) -> list[str]:
    """Capitalised phrases, identifiers with digits and dotted/underscored names: the graph's entity nodes."""
    found: list[str] = []
    for m in _ENTITY.finditer(text):
        words = m.group(0).strip().lower().split()
        while words and words[0] in STOPWORDS:  # "The API" -> "api"
            words.pop(0)
        e = " ".join(words)
        if len(e) > 2 and e not in STOPWORDS and e not in found:
            found.append(e)
        if len(found) >= limit:
            break
    return found


def instruction_like(text: str) -> bool:
    """Text that addresses agents with commands (prompt injection stored as a 'memory')."""
    return _INSTRUCTION.search(text) is not None


def url_hosts(text: str) -> set[str]:
    return {h.lower().split("@")[-1].split(":")[0] for h in _URL.findall(text)}


def has_credential(text: str) -> bool:
    """API keys, private keys, tokens and `password=` pairs: never to be served to other agents."""
    return _CREDENTIAL.search(text) is not None


def conflicts(new: str, old: str) -> bool:
    """Do two similar statements disagree? Different numbers, opposite polarity, or a swapped key term.

    Called only on pairs already found similar, so a shared frame with a different value ("port 8080" vs
    "port 9090", "auth is enabled" vs "auth is disabled", "uses Postgres" vs "uses MySQL") is a conflict.
    """
    a_num, b_num = set(_NUMBER.findall(new)), set(_NUMBER.findall(old))
    if a_num and b_num and a_num != b_num:
        return True
    a_words, b_words = set(tokens(new)), set(tokens(old))
    if bool(a_words & _NEGATIONS) != bool(b_words & _NEGATIONS):
        return True
    a, b = content_words(new), content_words(old)
    if not a or not b:
        return False
    only_a, only_b = a - b, b - a
    jaccard = len(a & b) / len(a | b)
    return jaccard >= 0.5 and 0 < len(only_a) <= 2 and 0 < len(only_b) <= 2
