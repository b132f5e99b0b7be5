"""Verification: p-values under the null, verdicts, and never a garbage message."""

from __future__ import annotations

import numpy as np
import pytest

from watermark.codec import assign, baseline_layout, choose_layout, make_word, submessages, text_to_bits
from watermark.verify import binomial_p, verdict_from_scores

KEY = b"owner-key"


def _marked_scores(layout, n, word, key=KEY, noise=0.3, seed=0):
    subs = submessages(word, layout, key)
    rng = np.random.default_rng(seed)
    return np.tanh(2.0 * subs[assign(n, layout, key)] - 1 + noise * rng.standard_normal((n, layout.sub_bits)))


def test_binomial_p_values_match_the_design_note():
    assert binomial_p(30, 30) == pytest.approx(9.3e-10, rel=0.01)
    assert binomial_p(27, 30) == pytest.approx(4.2e-6, rel=0.02)
    assert binomial_p(22, 30) == pytest.approx(8.1e-3, rel=0.02)
    assert binomial_p(0, 30) == 1.0


@pytest.mark.parametrize("claimed", [True, False])
def test_p_values_are_uniform_and_nothing_matches_under_the_null(claimed):
    layout = choose_layout(30, 0.8)
    rng = np.random.default_rng(0)
    word = make_word(rng.integers(0, 2, 14))
    ps, verdicts = [], []
    for trial in range(200):  # unmarked images: scores with no watermark, a decoder bias included
        bias = 0.2 * np.sin(np.arange(layout.sub_bits))
        scores = np.tanh(bias + rng.standard_normal((20, layout.sub_bits)))
        v = verdict_from_scores(
            scores, layout, f"key-{trial}".encode(), claimed_word=word if claimed else None, n_null_keys=8
        )
        ps.append(v.p_value)
        verdicts.append(v.verdict)
    ps = np.array(ps)
    assert "match" not in verdicts
    for alpha in (0.05, 0.1, 0.25, 0.5):
        assert (ps <= alpha).mean() <= alpha + 0.06  # discrete p-values: conservative up to sampling error
    assert (ps <= 0.5).mean() >= 0.25  # and not stuck at 1


def test_match_with_and_without_the_claimed_message():
    layout = choose_layout(30, 0.8)
    word = make_word(np.array([1, 0] * 7, dtype=np.uint8))
    scores = _marked_scores(layout, 30, word)
    v = verdict_from_scores(scores, layout, KEY, claimed_word=word)
    assert v.verdict == "match" and v.bit_accuracy == 1.0 and v.p_value < 1e-8
    v = verdict_from_scores(scores, layout, KEY)
    assert v.verdict == "match" and v.crc_ok and v.message == "bits:" + "10" * 7


def test_wrong_key_gives_no_watermark():
    layout = choose_layout(30, 0.6)
    word = make_word(np.ones(14, dtype=np.uint8))
    scores = _marked_scores(layout, 40, word)
    results = [
        verdict_from_scores(scores, layout, f"wrong-{i}".encode(), claimed_word=word).verdict
        for i in range(20)
    ]
    assert "match" not in results and results.count("no-watermark") >= 17


def test_missing_chunks_give_inconclusive_and_no_message():
    layout = choose_layout(30, 0.8)
    word = make_word(np.zeros(14, dtype=np.uint8))
    combos = assign(30, layout, KEY)
    scores = _marked_scores(layout, 30, word)[combos < 3]
    v = verdict_from_scores(scores, layout, KEY)
    assert v.verdict == "inconclusive" and v.message is None and v.missing_chunks == [3, 4]
    assert "more leaked images" in v.reason


def test_damaged_word_is_never_presented_as_a_message():
    layout = baseline_layout(30)
    word = make_word(np.zeros(14, dtype=np.uint8))
    scores = _marked_scores(layout, 3, word)
    scores[:, -1] = -scores[:, -1]  # the CRC no longer matches
    v = verdict_from_scores(scores, layout, KEY)
    assert v.verdict != "match" and v.message is None and not v.crc_ok


def test_a_wrong_claim_close_to_the_embedded_message_is_never_a_match():
    layout = choose_layout(32, 0.8)
    embedded, claim = make_word(text_to_bits("AB")), make_word(text_to_bits("AC"))
    scores = _marked_scores(layout, 30, embedded)
    v = verdict_from_scores(scores, layout, KEY, claimed_word=claim)
    assert v.verdict == "different-message" and v.message is None
    assert v.p_value < 1e-4 and v.bit_accuracy < 1  # agreement with the claim, reported as it is
    assert "'AB'" in v.reason and "different message" in v.reason
    noisy = _marked_scores(
        layout, 30, embedded, noise=3.0, seed=1
    )  # bit errors: CRC fails, claim unconfirmed
    v = verdict_from_scores(noisy, layout, KEY, claimed_word=claim)
    assert v.verdict != "match" and v.message is None


def test_too_few_testable_bits_are_inconclusive_not_no_watermark():
    layout = choose_layout(32, 0.8)  # N=5 chunks of 7 bits, 3 of them padding
    word = make_word(text_to_bits("AB"))
    combos = assign(30, layout, KEY)
    scores = _marked_scores(layout, 30, word)[combos == 0][:1]  # one image: 4 testable bits
    v = verdict_from_scores(scores, layout, KEY, claimed_word=word)
    assert v.verdict == "inconclusive" and "only 4 bits" in v.reason and v.message is None


def test_missing_chunks_without_a_claim_do_not_blame_only_the_leak_size():
    layout = choose_layout(32, 0.8)
    scores = np.tanh(np.random.default_rng(5).standard_normal((2, layout.sub_bits)))  # two unmarked images
    v = verdict_from_scores(scores, layout, KEY)
    assert v.verdict == "inconclusive" and v.missing_chunks
    assert "do not carry this key's watermark or more leaked images are needed" in v.reason
