"""AMUSE codec: parameter choice as published, round trips, soft voting, index errors, missing chunks,
coverage."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protect.errors import ConfigError
from watermark.codec import (
    assign,
    baseline_layout,
    bits_to_text,
    choose_layout,
    coverage_probability,
    crc16,
    crc_ok,
    decode,
    images_needed,
    make_word,
    min_release_images,
    submessages,
    text_to_bits,
    worst_case_images,
)

KEY = b"owner-key"


@pytest.mark.parametrize(
    "word_bits,tau,n,s,index,sub",
    [
        (30, 0.2, 5, 4, 3, 27),
        (30, 0.4, 3, 2, 2, 22),
        (30, 0.6, 5, 2, 4, 16),
        (30, 0.8, 5, 1, 3, 9),
        (30, 1.0, 15, 1, 4, 6),
        (64, 0.6, 5, 2, 4, 30),
        (64, 0.8, 5, 1, 3, 16),
        (64, 1.0, 22, 1, 5, 8),
        (256, 0.6, 5, 2, 4, 108),
        (256, 0.8, 5, 1, 3, 55),
        (256, 1.0, 86, 1, 7, 10),
    ],
)
def test_parameter_choice_matches_the_published_rule(word_bits, tau, n, s, index, sub):
    layout = choose_layout(word_bits, tau)
    assert (layout.n_chunks, layout.per_image, layout.index_bits, layout.sub_bits) == (n, s, index, sub)
    assert layout.guarantee <= tau


def test_no_gain_falls_back_to_the_whole_message():
    assert choose_layout(16, 0.2).n_chunks == 1
    assert choose_layout(30, 0.0).sub_bits == 30
    with pytest.raises(ConfigError, match="tau"):
        choose_layout(30, 1.5)


def _scores(word, layout, n_images, key=KEY, noise=0.0, seed=0):
    subs = submessages(word, layout, key)
    combos = assign(n_images, layout, key)
    rng = np.random.default_rng(seed)
    clean = 2.0 * subs[combos] - 1
    return clean + noise * rng.standard_normal(clean.shape), combos


@settings(max_examples=60, deadline=None)
@given(
    word_bits=st.integers(17, 140),
    tau=st.sampled_from([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_round_trip_over_many_lengths_and_taus(word_bits, tau, seed):
    rng = np.random.default_rng(seed)
    word = make_word(rng.integers(0, 2, word_bits - 16))
    layout = choose_layout(word_bits, tau) if tau else baseline_layout(word_bits)
    scores, combos = _scores(word, layout, 2 * layout.n_combinations)
    dec = decode(scores, layout, KEY)
    assert dec.complete and crc_ok(dec.word)
    np.testing.assert_array_equal(dec.word, word)
    np.testing.assert_array_equal(dec.combos, combos)


def test_soft_voting_recovers_noisy_scores_better_than_hard():
    word = make_word(np.random.default_rng(1).integers(0, 2, 14))
    layout = choose_layout(30, 0.8)
    soft_ok = hard_ok = 0
    for seed in range(40):
        scores, _ = _scores(word, layout, 40, noise=1.0, seed=seed)
        scores = np.tanh(scores)  # confident and unsure bits, like a real decoder
        soft_ok += np.array_equal(decode(scores, layout, KEY).word, word)
        hard_ok += np.array_equal(decode(scores, layout, KEY, soft=False, joint_index=False).word, word)
    assert soft_ok >= 25 and soft_ok > 2 * hard_ok


def test_corrupted_index_bits_are_corrected_by_the_chunk_bodies():
    word = make_word(np.random.default_rng(2).integers(0, 2, 14))
    layout = choose_layout(30, 0.6)  # N=5, s=2, 4 index bits
    scores, combos = _scores(word, layout, 60)
    flip = np.random.default_rng(0).integers(0, layout.index_bits, 20)
    scores[np.arange(20), flip] *= -1  # a third of the images: one index bit flipped
    dec = decode(scores, layout, KEY)
    np.testing.assert_array_equal(dec.word, word)
    np.testing.assert_array_equal(dec.combos, combos)
    published = decode(scores, layout, KEY, soft=False, joint_index=False)
    assert (
        published.combos != combos
    ).sum() >= 10  # read on its own, the index puts chunks in the wrong place
    scores[:20, : layout.index_bits] *= -1  # even every index bit flipped in a third of the images
    np.testing.assert_array_equal(decode(scores, layout, KEY).word, word)


def test_missing_chunks_are_reported_not_a_crash():
    word = make_word(np.zeros(14, dtype=np.uint8))
    layout = choose_layout(30, 0.8)  # s = 1: each image holds one chunk
    scores, combos = _scores(word, layout, 20)
    keep = np.isin(combos, [0, 1])
    dec = decode(scores[keep], layout, KEY)
    assert not dec.complete and dec.missing_chunks == [2, 3, 4]
    assert dec.covered.sum() == 2 * layout.chunk_bits - layout.pad
    np.testing.assert_array_equal(dec.word[dec.covered], word[dec.covered])


def test_tie_break_is_deterministic_and_keyed():
    layout = choose_layout(30, 0.8)
    zeros = np.zeros((10, layout.sub_bits))
    a, b = decode(zeros, layout, KEY).word, decode(zeros, layout, KEY).word
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, decode(zeros, layout, b"other").word)


def test_assignment_is_balanced_and_depends_on_the_key():
    layout = choose_layout(30, 0.6)
    t = assign(103, layout, KEY)
    counts = np.bincount(t, minlength=layout.n_combinations)
    assert counts.max() - counts.min() <= 1
    assert not np.array_equal(t, assign(103, layout, b"other"))
    assert not np.array_equal(t, np.arange(103) % layout.n_combinations)  # not dataset order


def test_wrong_key_decodes_noise_that_fails_the_crc():
    word = make_word(np.ones(14, dtype=np.uint8))
    layout = choose_layout(30, 0.8)
    scores, _ = _scores(word, layout, 30)
    fails = sum(not crc_ok(decode(scores, layout, f"k{i}".encode()).word) for i in range(50))
    assert fails >= 49


def test_crc_detects_every_single_and_double_bit_error():
    word = make_word(np.random.default_rng(3).integers(0, 2, 40))
    for i in range(len(word)):
        for j in range(i, len(word), 7):
            bad = word.copy()
            bad[i] ^= 1
            if j != i:
                bad[j] ^= 1
            assert not crc_ok(bad)
    assert len(crc16(word)) == 16


def test_text_round_trip_and_garbage_is_not_text():
    bits = text_to_bits("Über ©")
    assert bits_to_text(bits) == "Über ©"
    assert bits_to_text(np.ones(8, dtype=np.uint8)) is None
    assert bits_to_text(np.ones(7, dtype=np.uint8)) is None


def test_coverage_matches_the_design_table():
    l6, l8, l10 = choose_layout(30, 0.6), choose_layout(30, 0.8), choose_layout(30, 1.0)
    assert coverage_probability(l6, 5) == pytest.approx(0.64, abs=0.01)
    assert coverage_probability(l6, 8) == pytest.approx(0.92, abs=0.01)
    assert coverage_probability(l8, 10) == pytest.approx(0.52, abs=0.01)
    assert coverage_probability(l8, 20) == pytest.approx(0.94, abs=0.01)
    assert coverage_probability(l10, 50) == pytest.approx(0.60, abs=0.01)
    assert coverage_probability(l8, 4) == 0.0
    assert coverage_probability(baseline_layout(30), 1) == 1.0


def test_worst_case_is_just_above_k_over_n_of_the_release():
    layout = choose_layout(30, 0.8)  # k/N = 0.8
    assert worst_case_images(layout, 100) == 81
    assert images_needed(layout, 0.95) == 21  # coverage(20) = 0.94 in the design table
    assert images_needed(layout, 0.95, 100) <= 21
    # simulate: every 81-image subset of the keyed release covers all chunks
    t = assign(100, layout, KEY)
    rng = np.random.default_rng(0)
    for _ in range(200):
        subset = rng.choice(100, 81, replace=False)
        assert len(set(t[subset])) == layout.n_combinations


@pytest.mark.parametrize("tau", [0.6, 0.8])
@pytest.mark.parametrize("n", [7, 13])
def test_coverage_is_exact_for_release_sizes_that_are_not_multiples_of_c(tau, n):
    layout = choose_layout(30, tau)
    carried = [set(layout.combos[t]) for t in assign(n, layout, KEY)]  # the actual keyed release
    for m in (2, 4, 6):
        subsets = list(itertools.combinations(range(n), m))
        hits = sum(len(set().union(*(carried[i] for i in sub))) == layout.n_chunks for sub in subsets)
        assert coverage_probability(layout, m, n) == pytest.approx(hits / len(subsets), abs=1e-12)
    assert coverage_probability(layout, n, n) == (1.0 if n >= min_release_images(layout) else 0.0)


def test_release_size_needed_for_every_chunk():
    assert min_release_images(choose_layout(30, 0.8)) == 5  # s = 1: one image per chunk
    assert min_release_images(choose_layout(30, 0.6)) == 4  # (0,1) (0,2) (0,3) (0,4)
    assert min_release_images(baseline_layout(30)) == 1
