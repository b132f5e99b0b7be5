"""Which class each image belongs to: folder names, dataset labels, or k-means clusters of surrogate features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.cluster import KMeans

from protect.errors import ConfigError

LABEL_MODES = ("auto", "folders", "clusters")
OWNER = "owner"


def given_labels(mode: str, labels: Sequence[str | None]) -> list[str] | None:
    """Labels from folders / the dataset, or None when they must come from clustering.

    `folders` insists on a class sub-folder for every image; `auto` uses them when every image has one and falls back
    to a single class (one owner's photos) otherwise.
    """
    if mode not in LABEL_MODES:
        raise ConfigError(f"unknown --labels {mode!r}; choose one of {', '.join(LABEL_MODES)}")
    if mode == "clusters":
        return None
    if all(label is not None for label in labels):
        return [str(label) for label in labels]
    if mode == "folders":
        missing = sum(label is None for label in labels)
        raise ConfigError(f"--labels folders: {missing} image(s) are not inside a class sub-folder")
    return [OWNER] * len(labels)


def cluster_labels(features: torch.Tensor, *, k: int | None = None, seed: int = 0) -> list[str]:
    """k-means pseudo-labels on features; k defaults to about one cluster per 10 images, between 2 and 10."""
    n = len(features)
    if n < 4:
        raise ConfigError(f"--labels clusters needs at least 4 images, got {n}")
    k = k or int(np.clip(n // 10, 2, 10))
    km = KMeans(n_clusters=min(k, n // 2), n_init=4, random_state=seed).fit(features.detach().cpu().numpy())
    return [f"cluster:{c}" for c in km.labels_]
