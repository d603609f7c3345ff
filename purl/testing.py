"""Generators of test data with a known truth, for tests and benchmarks."""

from __future__ import annotations

import numpy as np


def simulate_embeddings(sizes, dim: int = 192, noise_rate: float = 0.2, clean_cos: tuple[float, float] = (0.5, 0.7),
                        between_cos: float = 0.2, utt_spread: float = 0.8, seed: int = 0, chunk: int = 1 << 16):
    """Embeddings with a known label noise, for tests and benchmarks.

    Speaker s has ``sizes[s]`` utterances: its centroid plus isotropic noise whose
    power sets the speaker's typical clean-pair cosine, drawn from ``clean_cos``;
    the power of each utterance varies around it (lognormal, sigma ``utt_spread``)
    as utterances of real speakers do (duration, channel), which spreads the clean
    pairs down towards the noisy ones. Centroids share one common
    direction so that different speakers have cosine ~``between_cos`` before noise
    (noisy pairs then land around 0.1). A fraction ``noise_rate`` of utterances is
    relabelled to a uniformly random other speaker (the noise simulation of stage 2).
    Returns embeddings (N, dim) float32, noisy labels (N,), true labels (N,).
    """
    rng = np.random.default_rng(seed)
    sizes = np.asarray(sizes, np.int64)
    n_spk, n_utts = len(sizes), int(sizes.sum())
    common = rng.standard_normal(dim)
    common /= np.linalg.norm(common)
    own = rng.standard_normal((n_spk, dim))
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    centroids = np.sqrt(between_cos) * common + np.sqrt(1 - between_cos) * own
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    # cos of two same-speaker utterances ~ 1 / (1 + noise power).
    power = 1 / rng.uniform(*clean_cos, size=n_spk) - 1
    true = np.repeat(np.arange(n_spk), sizes)
    emb = np.empty((n_utts, dim), np.float32)
    for start in range(0, n_utts, chunk):  # chunks: no float64 copy of all embeddings
        t = true[start:start + chunk]
        scale = np.sqrt(power[t] / dim) * np.sqrt(rng.lognormal(0.0, utt_spread, size=len(t)))
        noise = rng.standard_normal((len(t), dim), dtype=np.float32) * scale[:, None].astype(np.float32)
        emb[start:start + chunk] = centroids[t].astype(np.float32) + noise
    noisy = true.copy()
    flipped = rng.choice(n_utts, size=int(round(noise_rate * n_utts)), replace=False)
    if n_spk > 1:
        noisy[flipped] = (true[flipped] + rng.integers(1, n_spk, size=len(flipped))) % n_spk
    return emb, noisy, true
