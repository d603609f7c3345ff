"""The estimators of the per-speaker GMMs (registry :data:`ESTIMATORS`)."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Callable

import numpy as np

from purl.processes import in_processes
from purl.reliability.gmm import _LOG_2PI, GmmParams, Histograms, fit_gmm_histograms
from purl.reliability.pairs import HistogramFit, SpeakerPairs
from purl.reliability.settings import ReliabilityError, ReliabilitySettings
from purl.reliability.speakers import SpeakerIndex, iter_speaker_blocks, speaker_parts
from purl.threads import in_threads, work_threads

log = logging.getLogger(__name__)


def _is_degenerate(n_utts, std, settings: ReliabilitySettings):
    """The original work's rule: too few utterances or no spread -> w = 1."""
    return (n_utts < settings.min_utts) | (std < settings.min_std)


def _mark_degenerate(params: GmmParams, hist: Histograms, sizes: np.ndarray, settings) -> np.ndarray:
    """Marks speakers too small or without spread as w = 1; returns the others' rows."""
    degenerate = _is_degenerate(sizes, np.sqrt(hist.var), settings)
    for s in np.flatnonzero(degenerate):
        params.set_single(s, hist.n_pairs[s], hist.mean[s], hist.var[s], settings.reg_covar)
    return np.flatnonzero(~degenerate)


def _store_fits(params: GmmParams, rows, fit, n_pairs) -> None:
    weights, means, variances, loglik = fit
    params.weights[rows], params.means[rows], params.variances[rows] = weights, means, variances
    params.clean[rows] = np.argmax(means, axis=1)
    params.unit[rows] = False
    params.n_pairs[rows] = n_pairs
    params.loglik[rows] = loglik


def fit_histogram(pairs: SpeakerPairs, settings: ReliabilitySettings, nj: int = 1) -> GmmParams:
    """The per-speaker 2-component GMM, by EM on histograms of the pair cosines,
    the fitted speakers in blocks of one thread each. The fit is kept in
    ``pairs.histogram_fit``; a fit already there with these settings is returned."""
    fit = pairs.histogram_fit
    if fit is None or fit.settings != settings:
        hist = pairs.per_speaker_histograms(settings.n_bins)
        params = GmmParams.empty(len(pairs.index))
        rows = _mark_degenerate(params, hist, pairs.index.sizes(), settings)
        if len(rows):
            sub = Histograms(*(getattr(hist, f.name)[rows] for f in dataclasses.fields(hist)))
            x, counts, var_floor = sub.centres(), sub.counts, sub.width ** 2 / 12
            blocks = [b for b in np.array_split(np.arange(len(x)), work_threads()) if len(b)] or [np.arange(len(x))]
            parts = in_threads(lambda b: fit_gmm_histograms(x[b], counts[b], settings, var_floor[b]), blocks)
            _store_fits(params, rows, [np.concatenate(p) for p in zip(*parts)], sub.n_pairs)
        fit = pairs.histogram_fit = HistogramFit(settings, params, hist, rows)
    return fit.params


def fit_bic(pairs: SpeakerPairs, settings: ReliabilitySettings, nj: int = 1) -> GmmParams:
    """As "histogram", but a speaker whose pairs BIC explains better by one Gaussian
    gets w = 1 (1 component: 2 parameters; 2 components: 5).

    The n(n-1)/2 pairs of n utterances are far from independent (each utterance
    enters n-1 of them), so the textbook BIC, which counts pairs, finds "two
    components" in every large clean speaker: the small skew of its cosines earns
    more likelihood than ln(pairs) costs. By default BIC therefore counts
    utterances: the pair log-likelihoods are scaled to n observations and the
    penalty is k ln(n) (``bic_sample_size="pairs"`` gives the textbook version).
    """
    fit_histogram(pairs, settings)
    index, hist, rows = pairs.index, pairs.histogram_fit.hist, pairs.histogram_fit.rows
    params = pairs.histogram_fit.params.copy()  # "histogram"'s own stays as it is
    if len(rows) == 0:  # no speaker with enough utterances to fit: all keep w = 1
        return params
    n = hist.n_pairs[rows].astype(np.float64)
    n_eff = index.sizes()[rows].astype(np.float64) if settings.bic_sample_size == "utts" else n
    centres, counts = hist.centres()[rows], hist.counts[rows]
    # Both likelihoods on the same binned points, so binning errors cancel.
    mean = np.einsum("rb,rb->r", counts, centres) / n
    var = np.einsum("rb,rb->r", counts, (centres - mean[:, None]) ** 2) / n
    var = np.maximum(var, hist.width[rows] ** 2 / 12) + settings.reg_covar
    ll1 = -0.5 * n * (_LOG_2PI + np.log(var)) - 0.5 * np.einsum("rb,rb->r", counts, (centres - mean[:, None]) ** 2) / var
    lj = params.log_joint(np.repeat(rows, centres.shape[1]), centres.ravel()).reshape(len(rows), -1, 2)
    ll2 = np.einsum("rb,rb->r", counts, np.logaddexp(lj[..., 0], lj[..., 1]))
    bic1 = -2 * ll1 * (n_eff / n) + 2 * np.log(n_eff)
    bic2 = -2 * ll2 * (n_eff / n) + 5 * np.log(n_eff)
    for s in rows[bic1 <= bic2]:
        params.set_single(s, hist.n_pairs[s], hist.mean[s], hist.var[s], settings.reg_covar)
    return params


def fit_global(pairs: SpeakerPairs, settings: ReliabilitySettings, nj: int = 1) -> GmmParams:
    """One GMM over the pairs of all speakers, shared by every speaker (no w = 1 rule:
    the shared fit can judge pairs of small speakers too)."""
    hist = pairs.shared_bin_histograms(settings.n_bins)
    centres, counts = hist.centres()[:1], hist.counts.sum(axis=0, keepdims=True)
    if counts.sum() < 2:
        raise ReliabilityError("reliability: the 'global' estimator needs at least 2 same-label pairs")
    weights, means, variances, loglik = fit_gmm_histograms(centres, counts, settings, hist.width[:1] ** 2 / 12)
    n_spk = len(pairs.index)
    params = GmmParams.empty(n_spk)
    _store_fits(params, np.arange(n_spk), (np.repeat(weights, n_spk, 0), np.repeat(means, n_spk, 0),
                                           np.repeat(variances, n_spk, 0), np.repeat(loglik, n_spk)), hist.n_pairs)
    return params


def fit_sklearn(pairs: SpeakerPairs, settings: ReliabilitySettings, nj: int = 1) -> GmmParams:
    """The original work's fit: sklearn GaussianMixture per speaker on the exact
    cosines, in ``nj`` processes (speakers dealt by pair count, largest first to
    the least loaded). Every fit runs with one BLAS and one OpenMP thread, in one
    process or several: sklearn's k-means sums in OpenMP threads, whose
    reductions may change with their number, so this keeps each speaker's
    numbers the same for any ``nj``. The cosines are in ``settings.cosine_dtype``
    (sklearn fits float32 data in float32). A fit that raises stops the stage,
    or with ``failed_fit="w1"`` gives the speaker w = 1 (``params.failed``), as
    the original (src/ncu_utils.py:234-238)."""
    from threadpoolctl import threadpool_limits

    x, index = pairs.x, pairs.index
    parts = [p for p in speaker_parts(index, nj) if len(p)]
    if len(parts) <= 1:
        import sklearn.mixture  # noqa: F401  (loads sklearn's OpenMP library before the limit is set)

        with threadpool_limits(limits=1):
            return _fit_sklearn_speakers(x, index, settings)
    log.info("sklearn: %d speakers in %d processes", len(index), len(parts))
    subsets = [index.subset(part) for part in parts]
    # Each process gets its speakers' rows only, renumbered from 0.
    arguments = ((x[sub.order], SpeakerIndex(sub.speakers, np.arange(len(sub.order)), sub.starts), settings)
                 for sub in subsets)
    fits = in_processes(_fit_sklearn_speakers, arguments, len(parts), "reliability: the sklearn fits")
    params = GmmParams.empty(len(index))
    for part, fit in zip(parts, fits):
        params.put(part, fit)
    return params


def _fit_sklearn_speakers(x: np.ndarray, index: SpeakerIndex, settings: ReliabilitySettings) -> GmmParams:
    """fit_sklearn's loop over the speakers of ``index``, in this process."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    params = GmmParams.empty(len(index))
    dtype = np.dtype(settings.cosine_dtype)
    failures = []
    for s, utts, gram, upper in iter_speaker_blocks(x, index):
        cos = gram[upper].astype(dtype)
        std = cos.std() if cos.size else 0.0
        if _is_degenerate(len(utts), std, settings):
            params.set_single(s, cos.size, cos.mean() if cos.size else 0.0, std ** 2, settings.reg_covar)
            continue
        gmm = GaussianMixture(2, covariance_type="full", n_init=settings.n_init, max_iter=settings.max_iter,
                              tol=settings.tol, reg_covar=settings.reg_covar, random_state=settings.seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gmm.fit(cos[:, None])
        except Exception as e:  # what the original catches: any error of the fit
            first_line = (str(e).splitlines() or [type(e).__name__])[0]
            if settings.failed_fit != "w1":
                raise ReliabilityError(
                    f"reliability: the sklearn GMM fit of speaker {index.speakers[s]} ({len(utts)} utterances) "
                    f"failed: {first_line} (reliability.failed_fit=w1 gives its pairs w = 1, as the original "
                    "work)") from e
            params.set_single(s, cos.size, float(np.mean(cos, dtype=np.float64)),
                              float(np.var(cos, dtype=np.float64)), settings.reg_covar)
            params.failed[s] = True
            failures.append((index.speakers[s], first_line))
            continue
        fit = (gmm.weights_[None], gmm.means_[:, 0][None], gmm.covariances_.reshape(1, 2),
               np.array([gmm.score(cos[:, None])]))
        _store_fits(params, [s], fit, cos.size)
    if failures:
        speaker, error = failures[0]
        log.warning("reliability: the sklearn GMM fit of %d speaker(s) raised (first: %s: %s); their pairs keep "
                    "w = 1 (failed_fit: w1)", len(failures), speaker, error)
    return params


# (the pairs, settings, nj) -> parameters. Fits on one SpeakerPairs share work
# through it: "histogram" and "bic" run one per-speaker EM. nj: the processes
# of a per-speaker loop in Python ("sklearn"); the vectorised estimators run
# their numpy work in threads (purl.threads) and ignore it.
Estimator = Callable[[SpeakerPairs, ReliabilitySettings, int], GmmParams]
ESTIMATORS: dict[str, Estimator] = {
    "sklearn": fit_sklearn,
    "histogram": fit_histogram,
    "bic": fit_bic,
    "global": fit_global,
}
