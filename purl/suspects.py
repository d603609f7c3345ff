"""Which utterances of a labelled dir look mislabelled, by speaker centroids:
``purl clean``'s default rule (``--estimator centroid``).

The per-speaker GMMs of stage 4 (purl.reliability) split every speaker's pair
cosines into two components, also where a speaker has one: on a corpus with
1% wrong labels they flagged a fifth to half of the utterances (histogram) or,
keeping one component where BIC prefers it, missed half of the wrong ones
(bic). This rule asks of each utterance what a person checking a list would:

1. Each speaker's core centroid, from the half of its utterances nearest its
   plain centroid (purl.relabel.core_centroids): a wrong label rarely enters
   the core, so the centroid stays on the speaker's voice.
2. ``own``, the utterance's cosine to its label's centroid, and ``z``, how far
   that lies below the speaker's median own cosine, in robust standard
   deviations (1.4826 MAD) of that speaker: a scale of each speaker and model,
   not a cosine fixed in advance.
3. Suspect when another speaker's centroid is nearer than its own (margin =
   best - own > 0) and own is unusual for its speaker (z > ``spread``); or
   when own is far outside its speaker (z > ``outlier``), whoever it
   resembles: a voice of no speaker in the dir, or one of a one-speaker dir.

The nearest other speaker and the margin come with every suspect, so a list
says where an utterance would belong. A speaker with fewer than ``min_utts``
utterances is not judged (its core and spread mean nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from purl.errors import PurlError
from purl.relabel import checked_inputs, core_centroids, median_and_spread
from purl.scoring import l2_normalise


class SuspectError(PurlError, ValueError):
    """Embeddings, labels or settings the rule cannot use."""


@dataclass(frozen=True)
class SuspectSettings:
    core_ratio: float = 0.5  # fraction of each speaker nearest its plain centroid that makes its core
    spread: float = 2.5      # nearer another speaker and own this many robust sds below its median: suspect
    outlier: float = 5.0     # own this many robust sds below its speaker's median: suspect in any case
    min_utts: int = 3        # speakers with fewer utterances are not judged
    min_sd: float = 1e-4     # a speaker's robust sd is at least this (cosines without spread)

    def check(self) -> None:
        if not 0 < self.core_ratio <= 1:
            raise SuspectError(f"core_ratio {self.core_ratio} must be in (0, 1]")
        if not 0 <= self.spread <= self.outlier:
            raise SuspectError(f"need 0 <= spread <= outlier, got spread {self.spread}, outlier {self.outlier}")
        if self.min_utts < 2 or self.min_sd <= 0:
            raise SuspectError(f"need min_utts >= 2 and min_sd > 0, got {self.min_utts}, {self.min_sd}")


@dataclass
class Suspects:
    """Per utterance (in the order given): ``own`` and ``best`` cosines to its
    label's and the nearest other speaker's core centroid (best -inf with one
    speaker), ``best_speaker`` (-1 with one speaker), ``z`` (robust sds below
    its speaker's median own cosine; 0 where its speaker is not judged) and
    ``flagged``."""
    own: np.ndarray
    best: np.ndarray
    best_speaker: np.ndarray
    z: np.ndarray
    flagged: np.ndarray
    judged: np.ndarray  # (S,) whether each speaker had enough utterances to be judged

    @property
    def margin(self) -> np.ndarray:
        return self.best - self.own

    def order(self) -> np.ndarray:
        """The flagged utterances, least like their own speaker (highest z) first."""
        idx = np.flatnonzero(self.flagged)
        return idx[np.argsort(-self.z[idx], kind="stable")]


def find_suspects(emb: np.ndarray, labels: np.ndarray, settings: SuspectSettings = SuspectSettings()) -> Suspects:
    """(U, D) embeddings and (U,) integer labels 0..S-1 (every speaker with an
    utterance) -> the suspects. One speaker is allowed (outliers only)."""
    settings.check()
    emb, labels, n_speakers = checked_inputs(emb, labels, SuspectError)
    x = l2_normalise(emb)
    centroids, _ = core_centroids(x, labels, n_speakers, settings.core_ratio)
    rows = np.arange(len(labels))
    cos = x @ centroids.T  # (U, S): a dir for `purl clean`, not VoxCeleb's million x 6k
    own = cos[rows, labels].copy()
    cos[rows, labels] = -np.inf
    best_speaker = cos.argmax(axis=1) if n_speakers > 1 else np.full(len(labels), -1)
    best = cos[rows, best_speaker] if n_speakers > 1 else np.full(len(labels), -np.inf)
    median, sd = median_and_spread(own, labels, n_speakers)
    judged = np.bincount(labels, minlength=n_speakers) >= settings.min_utts
    z = np.where(judged[labels], (median[labels] - own) / np.maximum(sd[labels], settings.min_sd), 0.0)
    flagged = ((best > own) & (z > settings.spread)) | (z > settings.outlier)
    return Suspects(own=own, best=best, best_speaker=best_speaker, z=z, flagged=flagged, judged=judged)


def suspect_lines(utts: list[str], speakers: list[str], labels: np.ndarray, suspects: Suspects) -> str:
    """``utt label resembles margin own z`` per suspect, least like its speaker
    first; resembles '-' in a one-speaker dir."""
    return "".join(
        f"{utts[i]} {speakers[labels[i]]} "
        f"{speakers[suspects.best_speaker[i]] if suspects.best_speaker[i] >= 0 else '-'} "
        f"{suspects.margin[i]:.4f} {suspects.own[i]:.4f} {suspects.z[i]:.1f}\n" for i in suspects.order())
