"""Relabelling: for each training utterance, the speaker it sits with.

Stage 4's pair weights say that an utterance does not belong to its label; they
do not say where it belongs. This module answers that with the pretrained
model's embeddings and speaker centroids made robust to the noise they are to
find:

1. Each speaker's core: the ``core_ratio`` of its utterances nearest to its
   plain centroid (what the filtering baseline keeps). A mislabelled utterance
   is far from its label's centroid, so it rarely enters the core, and the core
   centroid is close to the speaker's true voice even at 40% noise.
2. Each utterance's cosine to every core centroid: ``own`` (its label's) and
   ``best`` (the highest of another speaker's), and margin = best - own.
3. margin > ``margin``, and its cosine to that speaker is one the speaker's own
   utterances have (at least their median minus ``join_spread`` robust
   standard deviations, 1.4826 MAD: robust to the mislabelled part): the
   utterance is proposed to move to that speaker. The second test keeps an
   outsider, equally far from every speaker, from moving to whichever is
   nearest by chance.
4. The move must also be unambiguous: the new speaker leads the runner-up (the
   next nearest speaker, own label included) by more than ``runner_up_margin``.
   A move that is not, the utterance torn between two other speakers, is
   dropped instead: a wrong move keeps a wrong label, a drop only loses an
   utterance (on speechocean762 at 20% uniform swaps, 0.1 turns about 40 of
   the ~50 wrong labels that moving leaves into drops, at the cost of ~100
   dropped utterances, nearly all of them mislabelled).
   Otherwise, when its own label is not among the ``drop_rank`` speakers
   nearest to it, it sits with no training speaker well enough to be kept or
   moved (an outsider, or one the model cannot place) and is proposed for
   dropping. A rank, not a cosine cut: cosines differ in scale between models
   and corpora, the rank of the own label does not (a correct utterance's own
   speaker is its nearest or nearly so; an outsider's label is a random one).

The proposals are a plain data dir transform (purl.stages.relabel_data_dir); the update
then trains on the new labels, with pair weights fitted again on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from purl.errors import PurlError
from purl.scoring import l2_normalise


class RelabelError(PurlError, ValueError):
    """Embeddings, labels or settings the relabelling cannot use."""


@dataclass(frozen=True)
class RelabelSettings:
    core_ratio: float = 0.5   # fraction of each speaker nearest its centroid that makes its core
    margin: float = 0.1       # best other speaker's cosine minus the own one's, above which an utterance moves
    join_spread: float = 3.0  # a move needs a cosine to the new speaker above its median minus this many robust sds
    drop_rank: int = 3        # not moved, and its own label not among its drop_rank nearest speakers: dropped (0: never)
    runner_up_margin: float = 0.1  # a move's lead over the next nearest speaker; less: dropped (0: any lead moves)

    def check(self) -> None:
        if not 0 < self.core_ratio <= 1:
            raise RelabelError(f"core_ratio {self.core_ratio} must be in (0, 1]")
        if not -2 <= self.margin <= 2:
            raise RelabelError(f"margin {self.margin} must be a cosine difference, in [-2, 2]")
        if not 0 <= self.runner_up_margin <= 2:
            raise RelabelError(f"runner_up_margin {self.runner_up_margin} must be a cosine difference, in [0, 2]")
        if self.join_spread < 0:
            raise RelabelError(f"join_spread {self.join_spread} must be >= 0")
        if not isinstance(self.drop_rank, int) or self.drop_rank < 0:
            raise RelabelError(f"drop_rank {self.drop_rank} must be a whole number >= 0 (0: never drop)")


@dataclass
class Proposals:
    """Per utterance (in the order given): ``new`` the proposed label index (-1:
    drop), ``own`` and ``best`` cosines, ``best_speaker`` the nearest other
    speaker, and ``own_rank`` the number of speakers nearer than its own."""
    new: np.ndarray
    own: np.ndarray
    best: np.ndarray
    best_speaker: np.ndarray
    own_rank: np.ndarray

    @property
    def margin(self) -> np.ndarray:
        return self.best - self.own

    def moved(self, labels: np.ndarray) -> np.ndarray:
        return (self.new >= 0) & (self.new != labels)

    @property
    def dropped(self) -> np.ndarray:
        return self.new < 0


def label_groups(labels: np.ndarray, n_labels: int) -> list[np.ndarray]:
    """The utterance indices of each label 0..n_labels-1, in order (empty for a
    label without utterances)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_labels + 1))
    return [order[bounds[s]:bounds[s + 1]] for s in range(n_labels)]


def core_centroids(emb: np.ndarray, labels: np.ndarray, n_speakers: int, core_ratio: float) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """(S, D) unit centroids of each speaker's core and (U,) core membership.
    ``emb`` unit rows; ``labels`` in 0..S-1, every speaker with an utterance."""
    counts = np.bincount(labels, minlength=n_speakers)
    if (counts == 0).any():
        raise RelabelError(f"speaker index {int(np.flatnonzero(counts == 0)[0])} has no utterance")
    plain = np.zeros((n_speakers, emb.shape[1]))
    np.add.at(plain, labels, emb)
    own = np.einsum("ij,ij->i", emb, l2_normalise(plain)[labels])
    order = np.lexsort((np.arange(len(labels)), -own, labels))  # per speaker, nearest first
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - np.repeat(starts, counts)
    core = rank < np.maximum(1, np.floor(counts * core_ratio))[labels]
    centroids = np.zeros_like(plain)
    np.add.at(centroids, labels[core], emb[core])
    return l2_normalise(centroids), core


def median_and_spread(values: np.ndarray, labels: np.ndarray, n_speakers: int) -> tuple[np.ndarray, np.ndarray]:
    """(S,) per speaker: the median of its ``values`` and their robust standard
    deviation, 1.4826 MAD (a standard deviation for normal data, robust to a
    mislabelled minority); NaN for a speaker without values."""
    median, spread = np.full(n_speakers, np.nan), np.full(n_speakers, np.nan)
    for s, g in enumerate(label_groups(labels, n_speakers)):
        v = values[g]
        if len(v):
            median[s] = np.median(v)
            spread[s] = 1.4826 * np.median(np.abs(v - median[s]))
    return median, spread


def join_cuts(own: np.ndarray, labels: np.ndarray, n_speakers: int, spread: float) -> np.ndarray:
    """(S,) per speaker: the median of its utterances' own cosines minus ``spread``
    robust standard deviations (:func:`median_and_spread`); inf without utterances."""
    median, sd = median_and_spread(own, labels, n_speakers)
    return np.nan_to_num(median - spread * sd, nan=np.inf)


def checked_inputs(emb, labels, error: type[Exception] = RelabelError) -> tuple[np.ndarray, np.ndarray, int]:
    """(U, D) float64 embeddings, (U,) integer labels and the number of speakers
    (labels 0..S-1); ``error`` names what is wrong with them."""
    emb = np.asarray(emb, dtype=np.float64)
    labels = np.asarray(labels)
    if emb.ndim != 2 or labels.shape != (emb.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise error(f"emb {emb.shape} must be (U, D) and labels {labels.shape} (U,) integers")
    return emb, labels, int(labels.max()) + 1 if len(labels) else 0


def propose(emb: np.ndarray, labels: np.ndarray, settings: RelabelSettings = RelabelSettings(),
            chunk: int = 65536) -> Proposals:
    """(U, D) embeddings and (U,) integer labels 0..S-1 -> the proposals."""
    settings.check()
    emb, labels, n_speakers = checked_inputs(emb, labels)
    if n_speakers < 2:
        raise RelabelError("relabelling needs at least 2 speakers")
    emb = l2_normalise(emb)
    centroids, core = core_centroids(emb, labels, n_speakers, settings.core_ratio)
    own = np.empty(len(labels))
    best = np.empty(len(labels))
    best_speaker = np.empty(len(labels), dtype=np.int64)
    own_rank = np.empty(len(labels), dtype=np.int64)
    runner_up = np.empty(len(labels))  # the second nearest other speaker's cosine, or the own one's if higher
    for start in range(0, len(labels), chunk):  # (chunk, S) at a time: 1M x 6k would be 48 GB
        part = slice(start, start + chunk)
        cos = emb[part] @ centroids.T
        rows = np.arange(cos.shape[0])
        own[part] = cos[rows, labels[part]]
        own_rank[part] = (cos > own[part, None]).sum(axis=1)
        cos[rows, labels[part]] = -np.inf
        best_speaker[part] = cos.argmax(axis=1)
        best[part] = cos[rows, best_speaker[part]]
        cos[rows, best_speaker[part]] = -np.inf
        runner_up[part] = np.maximum(cos.max(axis=1), own[part])
    new = labels.copy()
    leads = (best - own > settings.margin) & (best >= join_cuts(own, labels, n_speakers, settings.join_spread)[best_speaker])
    move = leads & ((best - runner_up > settings.runner_up_margin) | (settings.runner_up_margin == 0))
    new[move] = best_speaker[move]
    new[leads & ~move] = -1  # torn between two other speakers
    if settings.drop_rank > 0:
        new[~leads & (own_rank >= settings.drop_rank)] = -1
    return Proposals(new=new, own=own, best=best, best_speaker=best_speaker, own_rank=own_rank)


def proposal_metrics(labels: np.ndarray, proposals: Proposals, true_labels: np.ndarray,
                     training: np.ndarray | None = None) -> dict[str, float]:
    """Against the ground truth: relabel precision (moves to the true speaker) and
    recall (of the utterances whose true speaker is a training speaker, the
    fraction moved to it), drop precision (dropped utterances that were
    mislabelled) and the outsiders dropped. ``training``: (U,) whether the true
    speaker is a training speaker (False for outsiders); all True by default."""
    training = np.ones(len(labels), bool) if training is None else np.asarray(training)
    wrong = labels != true_labels
    moved = proposals.moved(labels)
    right_moves = moved & (proposals.new == true_labels)
    recoverable = wrong & training
    dropped = proposals.dropped
    out = {
        "n_mislabelled": int(wrong.sum()),
        "n_moved": int(moved.sum()),
        "n_dropped": int(dropped.sum()),
        # None where a metric has no cases (JSON has no NaN)
        "relabel_precision": float(right_moves.sum() / moved.sum()) if moved.any() else None,
        "relabel_recall": float(right_moves.sum() / recoverable.sum()) if recoverable.any() else None,
        "clean_moved": int((moved & ~wrong).sum()),
        "drop_precision": float((dropped & wrong).sum() / dropped.sum()) if dropped.any() else None,
        "clean_dropped": int((dropped & ~wrong).sum()),
        "mislabelled_left": int((wrong & ~right_moves & ~dropped).sum()),
    }
    if (~training).any():
        out["outsiders"] = int((~training).sum())
        out["outsiders_dropped"] = int((dropped & ~training).sum())
        out["outsiders_moved"] = int((moved & ~training).sum())
    return out
