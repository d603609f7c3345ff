"""Pair reliability (stage 4): how likely a same-label pair of training utterances
really comes from one speaker.

For every speaker (noisy label) the cosines of all its within-speaker pairs of
pretrained embeddings form a 1-D sample: pairs of two correctly labelled utterances
sit high, pairs that involve a mislabelled utterance sit low. A 2-component GMM is
fitted to that sample; the component with the higher mean is "clean" and a pair's
reliability w_ij is its posterior under the clean component (docs/method.md, its
first section).

Nothing here keeps a table of pairs (VoxCeleb2 has ~100M of them): a fit keeps one
GMM per speaker (:class:`GmmParams`), and :meth:`Reliability.weight` recomputes a
pair's cosine from the stored normalised embeddings and its posterior in closed form.

Estimators (``estimator:`` in a recipe's conf/reliability.yaml, or stage 4's
``--estimator``; registry :data:`ESTIMATORS`):

    sklearn    the original work's: sklearn GaussianMixture per speaker, on the exact
               pair cosines. The reference; slow (a Python loop over speakers).
    histogram  the default: the same model fitted by EM on a fine per-speaker
               histogram of the cosines, vectorised across speakers.
    bic        histogram fits, but a speaker keeps 1 component (every w = 1) when
               BIC prefers it, so a clean speaker does not lose pairs.
    global     one GMM over the positive pairs of all speakers.

A speaker with fewer than ``min_utts`` utterances, or whose pair cosines have no
spread, gets w = 1 for all its pairs (except under "global", which judges every
pair by the one shared fit).

Example::

    rel = Reliability.fit(embeddings, utt2spk_labels, "histogram")
    rel.save("exp/supcon/reliability")
    w = Reliability.load("exp/supcon/reliability").weight(i_idx, j_idx)

Modules: settings (ReliabilitySettings, ReliabilityError), speakers (SpeakerIndex,
per-speaker Gram blocks), gmm (GmmParams, histograms, EM), pairs (SpeakerPairs:
what the estimators read and share), estimators (the four fits, ESTIMATORS),
reliability (Reliability), files (the directory format),
detection (metrics against ground truth, suspected utterances), plot.
Test data: :func:`purl.testing.simulate_embeddings`.
"""

from purl.reliability.detection import (
    compare_fits,
    detection_metrics,
    detection_metrics_and_weights,
    detection_metrics_of_fits,
    histogram_auc,
    suspected_mislabelled,
    utterance_weights,
)
from purl.reliability.estimators import ESTIMATORS, fit_bic, fit_global, fit_histogram, fit_sklearn
from purl.reliability.files import EMBEDDINGS_FILE, FORMAT_VERSION, META_FILE, PARAMS_FILE, UTTS_FILE
from purl.reliability.gmm import GmmParams, Histograms, em_gmm1d, fit_gmm_histograms, speaker_histograms
from purl.reliability.pairs import SpeakerPairs
from purl.reliability.plot import PlotCounts, plot_reliability
from purl.reliability.reliability import Reliability
from purl.reliability.settings import ReliabilityError, ReliabilitySettings
from purl.reliability.speakers import SpeakerIndex, iter_speaker_blocks, normalise

__all__ = [
    "EMBEDDINGS_FILE", "ESTIMATORS", "FORMAT_VERSION", "META_FILE", "PARAMS_FILE", "UTTS_FILE",
    "GmmParams", "Histograms", "PlotCounts", "Reliability", "ReliabilityError", "ReliabilitySettings",
    "SpeakerIndex", "SpeakerPairs", "compare_fits", "detection_metrics", "detection_metrics_and_weights",
    "detection_metrics_of_fits", "em_gmm1d", "fit_bic", "fit_global", "fit_gmm_histograms", "fit_histogram",
    "fit_sklearn", "histogram_auc", "iter_speaker_blocks", "normalise", "plot_reliability",
    "speaker_histograms", "suspected_mislabelled", "utterance_weights",
]
