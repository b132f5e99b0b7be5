"""Retrieval metrics of the contrastive victims: exact on constructed embeddings, chance level against simulation."""

import numpy as np
import pytest
import torch

from unlearnable.t2ue.retrieval import chance_metrics, retrieval_metrics


def test_perfect_and_shifted_rankings():
    keys = np.arange(20)
    eye = torch.eye(20)
    perfect = retrieval_metrics(eye, eye, keys)
    assert perfect["i2t_r1"] == perfect["t2i_r1"] == 100.0 and perfect["i2t_medr"] == 1.0
    # image i's best text is i+1 and its own text comes second: rank 2 for every query
    shifted = retrieval_metrics(eye, 0.5 * eye + torch.roll(eye, 1, dims=0), keys)
    assert shifted["i2t_r1"] == 0.0 and shifted["i2t_r5"] == 100.0 and shifted["i2t_medr"] == 2.0


def test_duplicate_keys_count_as_hits():
    keys = np.array([0, 0, 1, 1])
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])  # image 1's own text ranks second
    assert retrieval_metrics(img, txt, keys)["i2t_r1"] == 100.0


def test_chance_matches_random_rankings():
    keys = np.repeat(np.arange(5), [40, 30, 15, 10, 5])
    gen = torch.Generator().manual_seed(0)
    sims = [
        retrieval_metrics(torch.randn(100, 16, generator=gen), torch.randn(100, 16, generator=gen), keys)
        for _ in range(200)
    ]
    chance = chance_metrics(keys)
    for k in (1, 5, 10):
        simulated = np.mean([s[f"t2i_r{k}"] for s in sims])
        assert simulated == pytest.approx(chance[f"r{k}"], abs=1.5)
    # one query per key: Recall@k of a random ranking is k / N
    assert chance_metrics(np.arange(50))["r10"] == pytest.approx(20.0)
    assert chance_metrics(np.zeros(7))["r1"] == 100.0
