"""The filtering baseline of the original submission (its filter_noisy_samples.py):
per speaker, the centroid (plain mean) of the utterances' embeddings; keep the
``keep_ratio`` of the speaker's utterances closest to it by cosine, at least
one; retrain on what is kept. Beside PURL and the control run it answers: does
throwing suspected utterances away do as well as unlearning their pairs?"""

from __future__ import annotations

import numpy as np

from purl.errors import PurlError


class FilterError(PurlError, ValueError):
    """Embeddings, labels or a keep ratio the filter cannot use."""


def centroid_filter(emb: np.ndarray, labels: np.ndarray, keep_ratio: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(U, D) embeddings, (U,) speaker labels -> (keep mask (U,) bool, cosine to own centroid (U,)).

    A speaker of n utterances keeps max(1, floor(n * keep_ratio)) of them (the
    original's ``max(1, int(n * keep_ratio))``), the highest cosines first; ties
    go to the earlier utterance.
    """
    emb = np.asarray(emb, dtype=np.float64)
    labels = np.asarray(labels)
    if emb.ndim != 2 or labels.shape != (emb.shape[0],):
        raise FilterError(f"emb {emb.shape} must be (U, D) and labels {labels.shape} (U,)")
    if not 0 < keep_ratio <= 1:
        raise FilterError(f"keep_ratio={keep_ratio} must be in (0, 1]")
    _, spk = np.unique(labels, return_inverse=True)
    counts = np.bincount(spk)
    centroids = np.zeros((counts.size, emb.shape[1]))
    np.add.at(centroids, spk, emb)
    centroids /= counts[:, None]
    own = centroids[spk]
    cosine = np.einsum("ij,ij->i", emb, own) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(own, axis=1) + 1e-8)
    # Within each speaker, order by descending cosine (stable: ties keep utterance order).
    order = np.lexsort((np.arange(spk.size), -cosine, spk))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(spk.size, dtype=np.int64)
    rank[order] = np.arange(spk.size) - np.repeat(starts, counts)
    n_keep = np.maximum(1, np.floor(counts * keep_ratio).astype(np.int64))
    keep = rank < n_keep[spk]
    return keep, cosine.astype(np.float32)
