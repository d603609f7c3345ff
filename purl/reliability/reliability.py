"""The pair weights: per-speaker GMMs plus the normalised embeddings give w for
any same-label pair."""

from __future__ import annotations

import os

import numpy as np

from purl.reliability import files
from purl.reliability.estimators import ESTIMATORS
from purl.reliability.gmm import GmmParams
from purl.reliability.pairs import SpeakerPairs
from purl.reliability.settings import ReliabilityError, ReliabilitySettings
from purl.reliability.speakers import SpeakerIndex


class Reliability:
    """Per-speaker GMMs plus the normalised embeddings: w for any same-label pair.

    embeddings: (N, D) float32, L2-normalised; labels: (N,) noisy speaker labels.
    """

    def __init__(self, embeddings: np.ndarray, labels: np.ndarray, params: GmmParams,
                 estimator: str, settings: ReliabilitySettings):
        self.embeddings = embeddings
        self.labels = np.asarray(labels)
        self.index, self.utt_spk = SpeakerIndex.from_labels(self.labels)
        if len(params) != len(self.index):
            raise ReliabilityError(f"reliability: {len(params)} speaker fits for {len(self.index)} speakers")
        self.params = params
        self.estimator = estimator
        self.settings = settings

    @classmethod
    def fit(cls, embeddings: np.ndarray, labels: np.ndarray, estimator: str = "histogram",
            settings: ReliabilitySettings | dict | None = None, *, normalised: bool = False,
            nj: int = 1) -> "Reliability":
        """Fits ``estimator``; ``normalised=True`` takes float32 embeddings that are
        already L2-normalised (another fit's ``embeddings``) and shares them
        instead of normalising a copy. ``nj``: processes of the "sklearn"
        estimator's per-speaker fits (the same fits in any number)."""
        return cls.fit_pairs(SpeakerPairs.from_embeddings(embeddings, labels, normalised=normalised),
                             estimator, settings, nj=nj)

    @classmethod
    def fit_pairs(cls, pairs: SpeakerPairs, estimator: str = "histogram",
                  settings: ReliabilitySettings | dict | None = None, *, nj: int = 1) -> "Reliability":
        """Fits ``estimator`` on ``pairs``: fits of several estimators on one
        SpeakerPairs(shared=True) share their work, with the results of separate fits."""
        if estimator not in ESTIMATORS:
            raise ReliabilityError(f"reliability: unknown estimator '{estimator}'; choose one of {sorted(ESTIMATORS)}")
        if nj < 1:
            raise ReliabilityError(f"reliability: nj must be at least 1 (processes), not {nj}")
        if not isinstance(settings, ReliabilitySettings):
            settings = ReliabilitySettings.from_dict(settings)
        return cls(pairs.x, pairs.labels, ESTIMATORS[estimator](pairs, settings, nj), estimator, settings)

    def cosine(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Pair cosines (P,), summed in ``settings.cosine_dtype``."""
        return np.einsum("pd,pd->p", self.embeddings[i], self.embeddings[j], dtype=self.settings.cosine_dtype)

    def log_odds(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """log(w / (1 - w)) per pair (+inf where w = 1); i, j: (P,) utterance indices.

        Raises ValueError for a pair of different labels: the fits only describe
        same-label pairs, and a silent nan would reach the loss.
        """
        i, j = np.asarray(i).reshape(-1), np.asarray(j).reshape(-1)
        spk = self.utt_spk[i]
        bad = np.flatnonzero(spk != self.utt_spk[j])
        if bad.size:
            k = bad[0]
            raise ReliabilityError(f"reliability: pair ({i[k]}, {j[k]}) has labels {self.labels[i[k]]!r} and "
                             f"{self.labels[j[k]]!r}; only same-label pairs have a weight")
        return self.params.log_odds(spk, self.cosine(i, j))

    def weight(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """w_ij, the clean component's posterior, (P,) float64 in [0, 1]."""
        from scipy.special import expit  # here: scipy.special takes a quarter second to import

        return expit(self.log_odds(i, j))

    # ----------------------------------------------------------------------- files

    def save(self, directory: str | os.PathLike) -> None:
        """Writes the directory of :mod:`purl.reliability.files`."""
        files.save(self, directory)

    @staticmethod
    def is_saved(directory: str | os.PathLike) -> bool:
        """Whether :meth:`save` completed in ``directory``."""
        return files.is_saved(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike, *, mmap: bool = True) -> "Reliability":
        """Reads a directory written by :meth:`save`. ``mmap`` maps the embeddings
        read-only, so data-loader workers share one copy."""
        return cls(*files.load(directory, mmap=mmap))
