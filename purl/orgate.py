"""OR-Gate selection, adapted to SupCon: which training utterances a run trains on.

The source: Fang, He, Ma, Guo and Li, "Robust Training for Speaker Verification
against Noisy Labels" (Interspeech 2023; arXiv 2211.12080, first titled
"OR-Gate: A Noisy Label Filtering Method for Speaker Verification"). After a
few warm-up epochs on all data, a classifier's top-k predicted speakers of each
utterance are compared with its label at every epoch, and an utterance trains
once its label has been among them at any epoch so far: an OR over epochs, so
a selected utterance stays selected (their code's defaults: k = 90 of
VoxCeleb's 1,211 or 5,994 speakers, after 5 warm-up epochs).

SupCon has no classifier, so here the "prediction" is the speaker centroids
nearest an utterance's embedding: each speaker's centroid is the
unit-normalised mean of its utterances' unit embeddings (under the labels
trained on, the utterance itself included), and an utterance is selected at a
fit when its own label is among its ``top_k`` nearest centroids by cosine.
The fits are made by the training callback purl.training.refit.OrGateSelection
(the pretrained model at the first epoch, then the current model every
``orgate.refit_every`` epochs); the sampler draws only the selected utterances
(purl.data.dataset.SpeakerBatchSampler.set_selection).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from purl.errors import PurlError
from purl.scoring import l2_normalise, speaker_means


class OrGateError(PurlError, ValueError):
    """Embeddings, labels or a k the selection cannot use."""


def own_label_rank(emb: np.ndarray, labels: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(U, D) embeddings, (U,) speaker indices 0..S-1 (each with an utterance) ->
    (U,) the rank of each utterance's own label among the speaker centroids by
    cosine to it: 1 when its own speaker's is the nearest. A tie counts for the
    own label."""
    labels = np.asarray(labels)
    if np.ndim(emb) != 2 or labels.shape != (np.shape(emb)[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise OrGateError(f"emb {np.shape(emb)} must be (U, D) and labels {labels.shape} (U,) integers")
    centroids = l2_normalise(speaker_means(emb, labels, normalise=True))
    emb = l2_normalise(emb)
    rank = np.empty(len(labels), dtype=np.int64)
    for start in range(0, len(labels), chunk):  # (chunk, S) at a time: 1M x 6k would be 24 GB
        part = slice(start, start + chunk)
        cos = emb[part] @ centroids.T
        own = cos[np.arange(len(cos)), labels[part]]
        rank[part] = 1 + (cos > own[:, None]).sum(axis=1)
    return rank


def orgate_select(ranks: Iterable[np.ndarray], top_k: int) -> np.ndarray:
    """The OR over fits: (U,) bool, true for an utterance whose own label was
    among its ``top_k`` nearest centroids at any of the fits' ``ranks`` (each
    (U,), :func:`own_label_rank`)."""
    if not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise OrGateError(f"top_k={top_k!r} must be a whole number >= 1")
    selected = None
    for rank in ranks:
        hit = np.asarray(rank) <= top_k
        selected = hit if selected is None else selected | hit
    if selected is None:
        raise OrGateError("no fit to select from")
    return selected
