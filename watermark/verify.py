"""Ownership verification: decoded bits become a verdict, never a bare bit string.

The AMUSE paper (arXiv 2403.05628) scores bit and word accuracy against a known message; an owner facing a
suspect set needs a decision with an error rate. We decode (soft voting, `watermark.codec.decode`), check the
CRC, and test:

- with a claimed message: the number of decoded bits agreeing with it, binomial(L, 1/2) under H0;
- without one: the number of CRC bits agreeing with the CRC recomputed from the decoded message bits,
  binomial(16, 1/2) under H0 (a random word passes the CRC with probability 2^-16).

Under H0 (unmarked images, or a wrong key) the keyed whitening makes every decoded bit a fair coin, so these
p-values are uniform (discretely). Decoders can be biased on unmarked images, so the same statistic is also
computed with `null_keys` wrong keys derived from the key, on the same extracted scores (no re-extraction): a
match must beat all of them. Verdicts: `match` (p <= alpha and beyond the empirical null, CRC valid or claimed
message confirmed), `no-watermark` (p > 0.01), otherwise `inconclusive` (including chunks not covered by the
suspect images).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import binom

from watermark.codec import CRC_BITS, Layout, bits_to_text, crc16, crc_ok, decode

ALPHA = 1e-4
NO_EVIDENCE = 0.01
NULL_KEYS = 64


@dataclass
class Verdict:
    """What `protect watermark verify` prints."""

    verdict: str
    message: str | None
    p_value: float
    empirical_p_value: float
    bit_accuracy: float | None
    images_read: int
    images_used: int
    crc_ok: bool
    missing_chunks: list[int] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["bit_accuracy"] is None:
            del d["bit_accuracy"]
        return d


def binomial_p(agree: int, n: int) -> float:
    """P(X >= agree) for X ~ Binomial(n, 1/2): the chance of this much agreement by luck."""
    return float(binom.sf(agree - 1, n, 0.5)) if n else 1.0


def _statistic(word: np.ndarray, covered: np.ndarray, claimed: np.ndarray | None) -> tuple[float, int, int]:
    """(p-value, agreeing bits, tested bits)."""
    if claimed is not None:
        agree = int(((word == claimed) & covered).sum())
        n = int(covered.sum())
    else:
        agree = int((crc16(word[:-CRC_BITS]) == word[-CRC_BITS:]).sum()) if covered.all() else 0
        n = CRC_BITS if covered.all() else 0
    return binomial_p(agree, n), agree, n


def null_keys(key: bytes, count: int) -> list[bytes]:
    return [key + b"\x00null-" + str(i).encode() for i in range(count)]


def verdict_from_scores(
    scores: np.ndarray,
    layout: Layout,
    key: bytes,
    *,
    claimed_word: np.ndarray | None = None,
    images_read: int | None = None,
    alpha: float = ALPHA,
    n_null_keys: int = NULL_KEYS,
) -> Verdict:
    """Decode per-image soft scores (n, l) and decide."""
    dec = decode(scores, layout, key)
    p, agree, n = _statistic(dec.word, dec.covered, claimed_word)
    nulls = [
        _statistic(decode(scores, layout, k).word, dec.covered, claimed_word)[0]
        for k in null_keys(key, n_null_keys)
    ]
    empirical = (1 + sum(q <= p for q in nulls)) / (1 + len(nulls))
    valid = crc_ok(dec.word) and dec.complete
    beyond_null = all(p < q for q in nulls)
    accuracy = agree / n if claimed_word is not None and n else None
    used = dec.images_used
    read = used if images_read is None else images_read
    message = None
    if claimed_word is not None:
        verdict = (
            "match" if p <= alpha and beyond_null else "no-watermark" if p > NO_EVIDENCE else "inconclusive"
        )
        if verdict == "match":
            message = _render(claimed_word[:-CRC_BITS])
    elif not dec.complete:
        verdict = "inconclusive"
    else:
        verdict = (
            "match"
            if valid and p <= alpha and beyond_null
            else "no-watermark"
            if p > NO_EVIDENCE
            else "inconclusive"
        )
        if verdict == "match":
            message = _render(dec.word[:-CRC_BITS])
    reason = _reason(verdict, dec.missing_chunks, p, alpha, beyond_null, valid, claimed_word is not None)
    return Verdict(verdict, message, p, empirical, accuracy, read, used, valid, dec.missing_chunks, reason)


def _render(bits: np.ndarray) -> str:
    text = bits_to_text(bits)
    return text if text is not None else "bits:" + "".join(map(str, bits.tolist()))


def _reason(
    verdict: str, missing: list[int], p: float, alpha: float, beyond_null: bool, valid: bool, claimed: bool
) -> str:
    gap = (
        f"; chunks {missing} are in none of the images read (more leaked images are needed)"
        if missing
        else ""
    )
    if verdict == "match":
        return (
            f"p = {p:.3g} <= {alpha:g}, beyond all wrong-key decodes"
            + ("" if claimed else ", CRC valid")
            + gap
        )
    if verdict == "no-watermark":
        return f"no evidence of this key's watermark (p = {p:.3g})" + gap
    if missing and not claimed:
        return gap[2:] + "; pass --message to test the covered bits"
    if not beyond_null:
        return f"p = {p:.3g} but a wrong key does as well: the images may carry another structure" + gap
    if not claimed and not valid:
        return "CRC fails: the message cannot be trusted"
    return f"weak evidence (p = {p:.3g} > {alpha:g})" + gap
