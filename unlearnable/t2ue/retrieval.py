"""Zero-shot retrieval metrics for contrastive victims (the paper's Table 2: Hit@K = Recall@K and median rank).

A query counts as answered at rank r when the r-th retrieved item has the query's `key` (e.g. the scene's attribute
tuple or the class), so exact duplicates in the test set are not counted as misses.
"""

from __future__ import annotations

import numpy as np
import torch

KS = (1, 5, 10)


def _ranks(sim: torch.Tensor, q_keys: torch.Tensor, d_keys: torch.Tensor) -> np.ndarray:
    """1-based rank of the first item with the query's key, for each query (row of `sim`)."""
    order = sim.argsort(dim=1, descending=True)
    hit = d_keys[order] == q_keys[:, None]
    return (hit.float().argmax(dim=1) + 1).numpy()


def retrieval_metrics(
    image_emb: torch.Tensor, text_emb: torch.Tensor, keys: np.ndarray | torch.Tensor
) -> dict[str, float]:
    """I2T and T2I Recall@1/5/10 (percent) and median rank for aligned (image_i, text_i) pairs."""
    keys = torch.as_tensor(np.asarray(keys))
    sim = image_emb.float() @ text_emb.float().T
    out: dict[str, float] = {}
    for name, s in (("i2t", sim), ("t2i", sim.T)):
        ranks = _ranks(s, keys, keys)
        for k in KS:
            out[f"{name}_r{k}"] = float(100.0 * np.mean(ranks <= k))
        out[f"{name}_medr"] = float(np.median(ranks))
    return out


def chance_metrics(keys: np.ndarray) -> dict[str, float]:
    """Recall@1/5/10 (percent) of a random ranking over the same aligned pairs: the floor of a victim that learned
    nothing. A query with n same-key items among N misses the top k with probability C(N - n, k) / C(N, k).

    On data with few distinct keys this floor is high (CIFAR classes, 100 test images each: 65% at k = 10), so a
    "half of clean" target can lie below it; a victim can only go under the floor by ranking against the key.
    """
    _, inverse, counts = np.unique(np.asarray(keys), return_inverse=True, return_counts=True)
    n_same, total = counts[inverse].astype(np.float64), len(inverse)
    out: dict[str, float] = {}
    for k in KS:
        steps = np.arange(min(k, total), dtype=np.float64)  # past N - n the factor is 0 already
        miss = np.prod(np.clip((total - n_same[:, None] - steps) / (total - steps), 0.0, None), axis=1)
        out[f"r{k}"] = float(100.0 * np.mean(1.0 - miss))
    return out
