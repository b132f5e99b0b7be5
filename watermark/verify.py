"""Ownership verification: decoded bits become a verdict, never a bare bit string.

The AMUSE paper (arXiv 2403.05628) scores bit and word accuracy against a known message; an owner facing a
suspect set needs a decision with an error rate. We decode (soft voting, `watermark.codec.decode`), check the
CRC, and test:

- with a claimed message: the number of decoded bits agreeing with it, binomial(L, 1/2) under H0;
- without one: the number of CRC bits agreeing with the CRC recomputed from the decoded message bits,
  binomial(16, 1/2) under H0 (a random word passes the CRC with probability 2^-16).

Under H0 (unmarked images, or a wrong key) the keyed whitening makes every decoded bit a fair coin, so these
p-values are uniform (discretely). Decoders can be biased on unmarked images, so the same statistic is also
computed with `null_keys` wrong keys derived from the key, on the same extracted scores (no re-extraction).

Verdicts:
- `match`: p <= alpha and beyond every wrong key, every chunk covered, and the decoded word passes its CRC;
  with a claimed message the decoded word must also equal the claim exactly (strong but partial agreement
  only shows that this key's watermark is there, not that it says this);
- `different-message`: a claim was tested, this key's watermark is there (p <= alpha, beyond the wrong keys)
  and the decoded word passes its CRC, but it is not the claim;
- `no-watermark`: p > 0.01 from a test that could have reached alpha;
- `inconclusive`: everything else: weak evidence, chunks not covered by the suspect images, too few testable
  bits for any agreement to reach alpha, or bit errors that keep a claim from being confirmed.
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


def testable(n: int, alpha: float = ALPHA) -> bool:
    """Whether n tested bits could reach alpha at all (perfect agreement gives p = 2^-n): with fewer, a high
    p-value is no evidence of absence."""
    return binomial_p(n, n) <= alpha


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
    evidence = p <= alpha and all(p < q for q in nulls)
    accuracy = agree / n if claimed_word is not None and n else None
    used = dec.images_used
    read = used if images_read is None else images_read
    if claimed_word is not None:
        exact = dec.complete and bool(np.array_equal(dec.word, claimed_word))
        verdict, reason = _claim_verdict(p, n, n - agree, evidence, exact, valid, dec.missing_chunks, alpha)
        message = _render(claimed_word[:-CRC_BITS]) if verdict == "match" else None
        if verdict == "different-message":
            reason += f" (it decodes to {_render(dec.word[:-CRC_BITS])!r}, CRC valid)"
    else:
        verdict, reason = _crc_verdict(p, evidence, valid, dec.missing_chunks, alpha)
        message = _render(dec.word[:-CRC_BITS]) if verdict == "match" else None
    return Verdict(verdict, message, p, empirical, accuracy, read, used, valid, dec.missing_chunks, reason)


def _render(bits: np.ndarray) -> str:
    text = bits_to_text(bits)
    return text if text is not None else "bits:" + "".join(map(str, bits.tolist()))


def _gap(missing: list[int]) -> str:
    return f"chunks {missing} are in none of the images read" if missing else ""


def _claim_verdict(
    p: float,
    n: int,
    differ: int,
    evidence: bool,
    exact: bool,
    valid: bool,
    missing: list[int],
    alpha: float,
) -> tuple[str, str]:
    """A claim is confirmed only by exact agreement of the whole decoded word: a wrong claim that shares most
    bits with the embedded message (same prefix, same year) agrees significantly, yet must not be certified."""
    if exact and valid and evidence:
        return "match", f"p = {p:.3g} <= {alpha:g}, beyond all wrong-key decodes, every bit agrees"
    if not testable(n, alpha):
        return "inconclusive", (
            f"only {n} bits can be tested, too few for p <= {alpha:g} even if all agree"
            + (f"; {_gap(missing)} (more leaked images are needed)" if missing else "")
        )
    if evidence and missing:
        return "inconclusive", (
            f"the {n} covered bits agree with the claim beyond chance (p = {p:.3g}, {differ} differ) but "
            f"{_gap(missing)}: the whole message cannot be confirmed (more leaked images are needed)"
        )
    if evidence and valid:
        return "different-message", (
            f"this key's watermark is present (p = {p:.3g}) but it carries a different message: {differ} of "
            f"{n} bits differ from the claim"
        )
    if evidence:
        return "inconclusive", (
            f"this key's watermark is present (p = {p:.3g}) but {differ} of {n} bits differ from the claim and "
            "the decoded word fails its CRC (bit errors or a different message): the claim is not confirmed"
        )
    return _weak_verdict(p, alpha) or ("inconclusive", f"weak evidence (p = {p:.3g} > {alpha:g})")


def _weak_verdict(p: float, alpha: float) -> tuple[str, str] | None:
    """No evidence at all, or a p-value a wrong key matches too; None when neither applies."""
    if p > NO_EVIDENCE:
        return "no-watermark", f"no evidence of this key's watermark (p = {p:.3g})"
    if p <= alpha:
        return (
            "inconclusive",
            f"p = {p:.3g} but a wrong key does as well: the images may carry another structure",
        )
    return None


def _crc_verdict(p: float, evidence: bool, valid: bool, missing: list[int], alpha: float) -> tuple[str, str]:
    """Without a claim the only test is the CRC, which needs every chunk."""
    if missing:
        return "inconclusive", (
            f"{_gap(missing)}, so the CRC cannot be checked: either they do not carry this key's watermark or "
            "more leaked images are needed; pass --message to test the covered bits"
        )
    if valid and evidence:
        return "match", f"p = {p:.3g} <= {alpha:g}, beyond all wrong-key decodes, CRC valid"
    return _weak_verdict(p, alpha) or ("inconclusive", "CRC fails: the message cannot be trusted")
