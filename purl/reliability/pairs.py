"""The same-label pairs of one set of embeddings, as the estimators read them,
and the work that several estimators fitted on them share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from purl.reliability.gmm import GmmParams, Histograms, speaker_histograms, speaker_histograms_of_kinds
from purl.reliability.settings import ReliabilityError, ReliabilitySettings
from purl.reliability.speakers import SpeakerIndex, normalise


@dataclass
class HistogramFit:
    """The per-speaker histogram EM made with ``settings``: the parameters, the
    histograms fitted, and the rows (speakers) the EM fitted (the others have w = 1)."""

    settings: ReliabilitySettings
    params: GmmParams
    hist: Histograms
    rows: np.ndarray


class SpeakerPairs:
    """L2-normalised embeddings ``x`` (N, D) float32 and their ``labels`` (N,),
    grouped by speaker (``index``): what every estimator reads.

    Stage 4 fits several estimators on one SpeakerPairs made with ``shared=True``,
    and they share its work: the scan that makes the per-speaker histograms
    also makes the histograms on shared bins that "global" fits, and
    ``histogram_fit``, the per-speaker EM of "histogram", is where "bic" starts.
    A fit with other settings is made anew; the results are those of separate fits.
    """

    def __init__(self, x: np.ndarray, index: SpeakerIndex, labels: np.ndarray | None = None, *,
                 shared: bool = False):
        self.x, self.index, self.labels, self.shared = x, index, labels, shared
        self.histogram_fit: HistogramFit | None = None
        self.shared_bins: Histograms | None = None  # made beside the per-speaker histograms when shared

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, labels: np.ndarray, *, normalised: bool = False,
                        shared: bool = False) -> "SpeakerPairs":
        """``normalised=True`` takes float32 embeddings that are already L2-normalised
        (another fit's) and shares them instead of normalising a copy."""
        embeddings, labels = np.asarray(embeddings), np.asarray(labels)
        if embeddings.ndim != 2 or len(embeddings) != len(labels):
            raise ReliabilityError(f"reliability: embeddings {embeddings.shape} and labels {labels.shape} do not match")
        x = embeddings if normalised and embeddings.dtype == np.float32 else normalise(embeddings)
        return cls(x, SpeakerIndex.from_labels(labels)[0], labels, shared=shared)

    def per_speaker_histograms(self, n_bins: int) -> Histograms:
        """Histograms of each speaker's pair cosines on bins spanning its own range."""
        if not self.shared:
            return speaker_histograms(self.x, self.index, n_bins, adaptive=True)
        hist, self.shared_bins = speaker_histograms_of_kinds(self.x, self.index, n_bins, (True, False))
        return hist

    def shared_bin_histograms(self, n_bins: int) -> Histograms:
        """Histograms of each speaker's pair cosines on bins shared by all, on [-1, 1]."""
        if self.shared_bins is not None and self.shared_bins.counts.shape[1] == n_bins:
            return self.shared_bins
        return speaker_histograms(self.x, self.index, n_bins, adaptive=False)
