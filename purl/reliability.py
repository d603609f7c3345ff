"""Pair reliability (stage 4): how likely a same-label pair of training utterances
really comes from one speaker.

For every speaker (noisy label) the cosines of all its within-speaker pairs of
pretrained embeddings form a 1-D sample: pairs of two correctly labelled utterances
sit high, pairs that involve a mislabelled utterance sit low. A 2-component GMM is
fitted to that sample; the component with the higher mean is "clean" and a pair's
reliability w_ij is its posterior under the clean component (DESIGN.md, "The
method, precisely").

Nothing here keeps a table of pairs (VoxCeleb2 has ~100M of them): a fit keeps one
GMM per speaker (:class:`GmmParams`), and :meth:`Reliability.weight` recomputes a
pair's cosine from the stored normalised embeddings and its posterior in closed form.

Estimators (config key ``reliability.estimator``, registry :data:`ESTIMATORS`):

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
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from scipy.special import expit
from threadpoolctl import threadpool_limits

from purl.metrics import roc_auc
from purl.threads import in_threads, work_threads

FORMAT_VERSION = 1
EMBEDDINGS_FILE = "embeddings.npy"
PARAMS_FILE = "gmm.npz"
META_FILE = "reliability.json"  # written last: its presence marks a complete directory

_EPS = 10 * np.finfo(np.float64).eps  # sklearn's guard against empty components
_LOG_2PI = np.log(2 * np.pi)


@dataclass
class ReliabilitySettings:
    """Settings of every estimator (config ``reliability.<field>``)."""

    n_bins: int = 256        # histogram bins per speaker (spanning its min..max cosine)
    n_init: int = 5          # EM initialisations; the best log-likelihood (by > tol) wins
    max_iter: int = 300
    # On the change of mean log-likelihood per pair, as sklearn. sklearn's default
    # 1e-3 (the original work's) stops EM long before the optimum when a speaker's
    # components overlap: on VoxCeleb2-like data its posteriors then move by up to
    # 0.3 as EM runs on, and depend on the init. 1e-8 gives converged fits (within
    # 0.003) at ~10 % more EM time; set 1e-3 to reproduce the original work.
    tol: float = 1e-8
    reg_covar: float = 1e-6  # added to every variance, as sklearn
    seed: int = 42           # sklearn's random_state
    min_utts: int = 3        # fewer utterances: w = 1
    min_std: float = 1e-4    # pair cosines with a smaller std have "no spread": w = 1
    bic_sample_size: str = "utts"  # "bic": the n of BIC, utterances or (textbook) pairs

    @classmethod
    def from_dict(cls, values: dict | None) -> "ReliabilitySettings":
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"reliability: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def __post_init__(self):
        if self.bic_sample_size not in ("utts", "pairs"):
            raise ValueError(f"reliability: bic_sample_size must be 'utts' or 'pairs', not {self.bic_sample_size!r}")
        if self.n_bins < 2 or self.n_init < 1 or self.max_iter < 1:
            raise ValueError(f"reliability: need n_bins >= 2, n_init >= 1, max_iter >= 1 (got {self})")


# --------------------------------------------------------------------------- speakers

@dataclass
class SpeakerIndex:
    """Utterances grouped by speaker: speaker s owns ``order[starts[s]:starts[s+1]]``."""

    speakers: np.ndarray  # (S,) label values, sorted
    order: np.ndarray     # (N',) utterance indices, grouped by speaker, ascending within one
    starts: np.ndarray    # (S+1,)

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> tuple["SpeakerIndex", np.ndarray]:
        """Returns the index and ``utt_spk`` (N,): each utterance's row in ``speakers``."""
        speakers, utt_spk = np.unique(np.asarray(labels), return_inverse=True)
        order = np.argsort(utt_spk, kind="stable")
        starts = np.searchsorted(utt_spk[order], np.arange(len(speakers) + 1))
        return cls(speakers, order, starts), utt_spk.reshape(-1)

    def __len__(self) -> int:
        return len(self.speakers)

    def sizes(self) -> np.ndarray:
        return np.diff(self.starts)

    def utts(self, s: int) -> np.ndarray:
        return self.order[self.starts[s]:self.starts[s + 1]]

    def subset(self, rows: np.ndarray) -> "SpeakerIndex":
        """The index of speakers ``rows`` only (same utterance numbering)."""
        rows = np.asarray(rows)
        parts = [self.utts(s) for s in rows]
        starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        order = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return SpeakerIndex(self.speakers[rows], order, starts)


def normalise(embeddings: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copy of (N, D) embeddings (a zero row stays zero)."""
    x = np.array(embeddings, dtype=np.float32)  # a copy: the caller's array is kept
    norms = np.sqrt(np.einsum("nd,nd->n", x, x))
    x /= np.maximum(norms, 1e-12)[:, None]
    return x


def iter_speaker_blocks(x: np.ndarray, index: SpeakerIndex,
                        speakers: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Yields ``(s, utts, gram, upper)`` per speaker (of ``speakers``, default all):
    the Gram matrix (n, n) of its normalised embeddings and a boolean mask of the
    upper triangle (its pairs i<j).

    Speakers come smallest first so that consecutive speakers of one size share the
    mask (do not modify it); only one speaker's pairs are in memory at a time.
    """
    sizes = index.sizes()
    if speakers is not None:
        sizes = np.where(np.isin(np.arange(len(sizes)), speakers), sizes, -1)
    upper = np.zeros((0, 0), bool)
    # One BLAS thread: on matrices of a few hundred rows OpenBLAS's threads cost
    # more than they give, and on a busy machine a scan runs 20x slower with 2
    # threads than with 1 (measured). The limit holds while the caller works
    # on a block, and is lifted when the iteration ends.
    with threadpool_limits(limits=1, user_api="blas"):
        for s in np.argsort(sizes, kind="stable"):
            if sizes[s] < 0:  # not among ``speakers``
                continue
            utts = index.utts(s)
            xs = x[utts]
            if upper.shape[0] != len(utts):
                upper = np.triu(np.ones((len(utts), len(utts)), bool), 1)
            yield int(s), utts, xs @ xs.T, upper


def speaker_parts(index: SpeakerIndex, n_parts: int) -> list[np.ndarray]:
    """The speakers dealt into ``n_parts`` sets of near-equal pair counts
    (largest first, each to the set with the fewest pairs so far)."""
    sizes = index.sizes().astype(np.int64)
    n_parts = max(1, min(n_parts, len(sizes)))
    load = np.zeros(n_parts)
    owner = np.empty(len(sizes), np.intp)
    for s in np.argsort(-sizes, kind="stable"):
        k = int(np.argmin(load))
        owner[s] = k
        load[k] += sizes[s] * (sizes[s] - 1) / 2 + 1
    return [np.flatnonzero(owner == k) for k in range(n_parts)]


# --------------------------------------------------------------------------- GMM parameters

@dataclass
class GmmParams:
    """One 2-component 1-D GMM per speaker, rows aligned with ``SpeakerIndex.speakers``.

    A speaker with ``unit`` set gets w = 1; its component 0 then holds a single
    Gaussian fitted to its pairs (weight 1), so plots can still draw it.
    """

    weights: np.ndarray    # (S, 2)
    means: np.ndarray      # (S, 2)
    variances: np.ndarray  # (S, 2)
    clean: np.ndarray      # (S,) int8, the component with the higher mean
    unit: np.ndarray       # (S,) bool, w = 1 for every pair
    n_pairs: np.ndarray    # (S,) int64
    loglik: np.ndarray     # (S,) mean log-likelihood per pair of the fit (nan if unit)

    @classmethod
    def empty(cls, n_speakers: int) -> "GmmParams":
        return cls(
            weights=np.tile([1.0, 0.0], (n_speakers, 1)),
            means=np.zeros((n_speakers, 2)),
            variances=np.ones((n_speakers, 2)),
            clean=np.zeros(n_speakers, np.int8),
            unit=np.ones(n_speakers, bool),
            n_pairs=np.zeros(n_speakers, np.int64),
            loglik=np.full(n_speakers, np.nan),
        )

    def __len__(self) -> int:
        return len(self.clean)

    def copy(self) -> "GmmParams":
        return GmmParams(**{f.name: getattr(self, f.name).copy() for f in dataclasses.fields(self)})

    def take(self, rows: np.ndarray) -> "GmmParams":
        return GmmParams(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})

    def set_single(self, s: int, n_pairs: int, mean: float, var: float, reg_covar: float) -> None:
        """Marks speaker s as w = 1, keeping one Gaussian of its pairs in component 0."""
        self.weights[s] = (1.0, 0.0)
        self.means[s] = mean
        self.variances[s] = var + reg_covar
        self.clean[s] = 0
        self.unit[s] = True
        self.n_pairs[s] = n_pairs
        self.loglik[s] = np.nan

    def log_joint(self, spk: np.ndarray, cos: np.ndarray) -> np.ndarray:
        """log(pi_k N(cos; mu_k, var_k)) for speaker rows ``spk`` (P,) -> (P, 2)."""
        cos = np.asarray(cos, np.float64)[:, None]
        var = self.variances[spk]
        with np.errstate(divide="ignore"):  # a component of weight 0 (unit speakers)
            logw = np.log(self.weights[spk])
        return logw - 0.5 * (_LOG_2PI + np.log(var)) - 0.5 * (cos - self.means[spk]) ** 2 / var

    def log_odds(self, spk: np.ndarray, cos: np.ndarray) -> np.ndarray:
        """log(p_clean / p_noisy) per pair; +inf for unit speakers. (P,) -> (P,)."""
        lj = self.log_joint(spk, cos)
        rows = np.arange(len(lj))
        clean = self.clean[spk].astype(np.intp)
        with np.errstate(invalid="ignore"):
            out = lj[rows, clean] - lj[rows, 1 - clean]
        out[self.unit[spk]] = np.inf
        return out

    def log_odds_one(self, s: int, cos: np.ndarray) -> np.ndarray:
        """:meth:`log_odds` of pairs of one speaker s (the same arithmetic on
        scalars instead of per-pair copies of the parameters). (P,) -> (P,)."""
        if self.unit[s]:
            return np.full(len(cos), np.inf)
        cos = np.asarray(cos, np.float64)
        lj = []
        for k in (int(self.clean[s]), 1 - int(self.clean[s])):
            var = self.variances[s, k]
            with np.errstate(divide="ignore"):
                logw = np.log(self.weights[s, k])
            lj.append(logw - 0.5 * (_LOG_2PI + np.log(var)) - 0.5 * (cos - self.means[s, k]) ** 2 / var)
        with np.errstate(invalid="ignore"):
            return lj[0] - lj[1]

    def mean_loglik(self, s: int, cos: np.ndarray) -> float:
        """Mean log-likelihood per pair of speaker s's fit on the given cosines."""
        lj = self.log_joint(np.full(len(cos), s), cos)
        return float(np.logaddexp(lj[:, 0], lj[:, 1]).mean())


# --------------------------------------------------------------------------- histograms

@dataclass
class Histograms:
    """Per-speaker histograms of pair cosines, with the exact moments of the pairs."""

    counts: np.ndarray  # (S, B) float64
    lo: np.ndarray      # (S,) left edge of bin 0
    width: np.ndarray   # (S,) bin width
    n_pairs: np.ndarray  # (S,) int64
    mean: np.ndarray    # (S,)
    var: np.ndarray     # (S,)

    def centres(self) -> np.ndarray:
        return self.lo[:, None] + (np.arange(self.counts.shape[1]) + 0.5) * self.width[:, None]


def speaker_histograms(x: np.ndarray, index: SpeakerIndex, n_bins: int, *, adaptive: bool = True) -> Histograms:
    """Histograms of every speaker's pair cosines, one speaker's pairs at a time.

    ``adaptive`` spans each speaker's own min..max (the finest resolution for a given
    number of bins); otherwise every speaker shares bins on [-1, 1] (for "global" and
    plots, where histograms are summed).
    """
    return speaker_histograms_of_kinds(x, index, n_bins, (adaptive,))[0]


def speaker_histograms_of_kinds(x: np.ndarray, index: SpeakerIndex, n_bins: int,
                                adaptive: tuple[bool, ...]) -> list[Histograms]:
    """speaker_histograms for each value of ``adaptive``, from one scan of the pairs."""
    n_spk = len(index)
    hists = [Histograms(
        counts=np.zeros((n_spk, n_bins)),
        lo=np.full(n_spk, -1.0),
        width=np.full(n_spk, 2.0 / n_bins),
        n_pairs=np.zeros(n_spk, np.int64),
        mean=np.zeros(n_spk),
        var=np.zeros(n_spk),
    ) for _ in adaptive]

    def scan(speakers):  # each thread fills its own speakers' rows
        for s, _, gram, upper in iter_speaker_blocks(x, index, speakers):
            add_speaker(s, gram[upper])

    def add_speaker(s, cos):
        if cos.size == 0:
            return
        n_pairs, mean, var = cos.size, cos.mean(dtype=np.float64), cos.var(dtype=np.float64)
        lo, hi = float(cos.min()), float(cos.max())
        for hist, spans_speaker in zip(hists, adaptive):
            hist.n_pairs[s], hist.mean[s], hist.var[s] = n_pairs, mean, var
            if spans_speaker:
                hist.lo[s] = lo
                hist.width[s] = (hi - lo) / n_bins if hi > lo else 1.0
            pos = (cos - np.float32(hist.lo[s])) * np.float32(1.0 / hist.width[s])
            bins = np.clip(pos.astype(np.intp), 0, n_bins - 1)
            hist.counts[s] = np.bincount(bins, minlength=n_bins)

    in_threads(scan, speaker_parts(index, work_threads()))
    return hists


# --------------------------------------------------------------------------- EM on histograms

class _WeightedPoints:
    """Rows of weighted 1-D points (bin centres x and counts, (R, B)) with the totals
    the M-step needs: with two components, component 0's sums are the totals minus
    component 1's, so each EM step makes one set of weighted sums, not two."""

    def __init__(self, x, counts, var_floor):
        self.x, self.counts, self.var_floor = x, counts, var_floor
        self.x2 = x * x
        self.n = counts.sum(axis=1)
        self.sx = np.einsum("rb,rb->r", counts, x)
        self.sx2 = np.einsum("rb,rb->r", counts, self.x2)

    def take(self, rows) -> "_WeightedPoints":
        out = object.__new__(_WeightedPoints)
        for name in ("x", "counts", "var_floor", "x2", "n", "sx", "sx2"):
            setattr(out, name, getattr(self, name)[rows])
        return out

    def m_step(self, r1, reg_covar):
        """sklearn's M-step for resp (1 - r1, r1), (R, B): weights, means, variances (R, 2)."""
        c1 = self.counts * r1
        n1, s1, q1 = c1.sum(axis=1), np.einsum("rb,rb->r", c1, self.x), np.einsum("rb,rb->r", c1, self.x2)
        nk = np.stack([self.n - n1, n1], axis=1) + _EPS
        means = np.stack([self.sx - s1, s1], axis=1) / nk
        var = np.stack([self.sx2 - q1, q1], axis=1) / nk - means ** 2
        # Binning puts many pairs on one exact value; a component shrinking onto one
        # bin would gain a likelihood the unbinned pairs do not give. Its variance is
        # therefore kept at least that of a uniform spread over a bin.
        var = np.maximum(var, self.var_floor[:, None]) + reg_covar
        return nk / nk.sum(axis=1, keepdims=True), means, var

    def e_step(self, weights, means, variances):
        """Mean log-likelihood per point (R,) and resp of component 1 (R, B)."""
        const = np.log(weights) - 0.5 * (_LOG_2PI + np.log(variances))
        lj0 = const[:, :1] - 0.5 * (self.x - means[:, :1]) ** 2 / variances[:, :1]
        lj1 = const[:, 1:] - 0.5 * (self.x - means[:, 1:]) ** 2 / variances[:, 1:]
        log_norm = np.logaddexp(lj0, lj1)
        return np.einsum("rb,rb->r", self.counts, log_norm) / self.n, np.exp(lj1 - log_norm)


def em_gmm1d(points: _WeightedPoints, init, settings: ReliabilitySettings):
    """EM of a 2-component 1-D GMM per row of weighted points, vectorised across rows.

    init: (weights, means, variances), each (R, 2). Mirrors sklearn: the loop stops
    when the mean log-likelihood per point changes by less than ``tol``; the returned
    log-likelihood is that of the last E-step. Rows that converge leave the arrays,
    so late iterations only cost what the slow rows need.
    Returns (weights, means, variances) each (R, 2) and loglik (R,).
    """
    out = [np.array(p, np.float64) for p in init]
    out_ll = np.full(len(points.x), -np.inf)
    rows = np.arange(len(points.x))
    w, m, v = (p.copy() for p in out)
    prev = np.full(len(rows), -np.inf)
    for it in range(settings.max_iter):
        loglik, r1 = points.e_step(w, m, v)
        w, m, v = points.m_step(r1, settings.reg_covar)
        done = np.abs(loglik - prev) < settings.tol
        if it == settings.max_iter - 1:
            done[:] = True  # sklearn would warn here; the fit is used as it stands
        prev = loglik
        if done.any():
            for o, p in zip(out, (w, m, v)):
                o[rows[done]] = p[done]
            out_ll[rows[done]] = loglik[done]
            keep = np.flatnonzero(~done)
            rows, points, prev, w, m, v = rows[keep], points.take(keep), prev[keep], w[keep], m[keep], v[keep]
            if not len(rows):
                break
    return (*out, out_ll)


def _init_thresholds(x, counts, n_init):
    """Split points per row (R, n_init): 1-D k-means, as sklearn's kmeans init
    converges to, then evenly spaced quantiles to reach other optima."""
    cdf = np.cumsum(counts, axis=1) / counts.sum(axis=1, keepdims=True)
    out = np.empty((len(x), n_init))
    # Lloyd's iterations of 2-means on the weighted points, started at the mean.
    t = np.einsum("rb,rb->r", counts, x) / counts.sum(axis=1)
    for _ in range(100):
        high = x > t[:, None]
        c_hi, c_lo = (counts * high).sum(1), (counts * ~high).sum(1)
        m_hi = (counts * high * x).sum(1) / np.maximum(c_hi, 1e-300)
        m_lo = (counts * ~high * x).sum(1) / np.maximum(c_lo, 1e-300)
        new_t = 0.5 * (m_hi + m_lo)
        if np.array_equal(new_t, t):
            break
        t = new_t
    out[:, 0] = t
    for k, q in enumerate(np.linspace(0.1, 0.9, n_init - 1) if n_init > 1 else [], start=1):
        first = np.argmax(cdf >= q, axis=1)
        # Never split above the last non-empty bin: both sides keep some pairs.
        last = counts.shape[1] - 1 - np.argmax(counts[:, ::-1] > 0, axis=1)
        out[:, k] = np.take_along_axis(x, np.minimum(first, last - 1)[:, None], 1)[:, 0]
    return out


def fit_gmm_histograms(x, counts, settings: ReliabilitySettings, var_floor=None):
    """Best of ``n_init`` EM runs per row of weighted points x, counts (R, B):
    (weights, means, variances) each (R, 2) and loglik (R,). Rows are
    independent: blocks of them run in threads, with the results of one thread."""
    var_floor = np.zeros(len(x)) if var_floor is None else np.asarray(var_floor, np.float64)
    blocks = [b for b in np.array_split(np.arange(len(x)), work_threads()) if len(b)] or [np.arange(len(x))]
    fits = in_threads(lambda rows: _fit_gmm_rows(x[rows], counts[rows], settings, var_floor[rows]), blocks)
    return [np.concatenate(parts) for parts in zip(*fits)]


def _fit_gmm_rows(x, counts, settings: ReliabilitySettings, var_floor):
    points = _WeightedPoints(x, counts, var_floor)
    thresholds = _init_thresholds(x, counts, settings.n_init)
    best = None
    for k in range(settings.n_init):
        init = points.m_step((x > thresholds[:, k:k + 1]).astype(np.float64), settings.reg_covar)
        *params, loglik = em_gmm1d(points, init, settings)
        if best is None:
            best = [*params, loglik]
            continue
        # EM stops (tol) before the optimum, so two inits reaching one optimum differ
        # slightly; only a gain beyond tol is another optimum. Otherwise the k-means
        # init's fit stays: it follows sklearn's own path.
        better = loglik > best[3] + settings.tol
        for b, p in zip(best, (*params, loglik)):
            b[better] = p[better]
    return best


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


def _fit_per_speaker_histograms(x, index, settings, cache: dict | None = None):
    """(params, histograms, fitted rows) of the per-speaker histogram EM; with
    ``cache`` (a dict shared by the fits of one set of embeddings, see
    Reliability.fit) computed once for "histogram" and "bic". Callers must not
    modify what it returns: "bic" changes a copy of the parameters."""
    if cache is not None:
        inputs = cache.get("per_speaker_inputs")
        if inputs is not None and inputs[0] is x and inputs[1] is index and inputs[2] == settings:
            return cache["per_speaker"]
    if cache is None:
        hist = speaker_histograms(x, index, settings.n_bins, adaptive=True)
    else:
        # The scan of the pairs makes "global"'s shared-bin histograms too.
        hist, shared = speaker_histograms_of_kinds(x, index, settings.n_bins, (True, False))
        cache["shared_bins_inputs"], cache["shared_bins"] = (x, index, settings.n_bins), shared
    result = _fit_histograms(hist, index, settings)
    if cache is not None:
        cache["per_speaker_inputs"], cache["per_speaker"] = (x, index, settings), result
    return result


def _fit_histograms(hist, index, settings):
    params = GmmParams.empty(len(index))
    rows = _mark_degenerate(params, hist, index.sizes(), settings)
    if not len(rows):
        return params, hist, rows
    sub = Histograms(*(getattr(hist, f.name)[rows] for f in dataclasses.fields(hist)))
    fit = fit_gmm_histograms(sub.centres(), sub.counts, settings, var_floor=sub.width ** 2 / 12)
    _store_fits(params, rows, fit, sub.n_pairs)
    return params, hist, rows


def fit_histogram(x: np.ndarray, index: SpeakerIndex, settings: ReliabilitySettings,
                  cache: dict | None = None) -> GmmParams:
    """The per-speaker 2-component GMM, by EM on histograms of the pair cosines."""
    return _fit_per_speaker_histograms(x, index, settings, cache)[0]


def fit_bic(x: np.ndarray, index: SpeakerIndex, settings: ReliabilitySettings,
            cache: dict | None = None) -> GmmParams:
    """As "histogram", but a speaker whose pairs BIC explains better by one Gaussian
    gets w = 1 (1 component: 2 parameters; 2 components: 5).

    The n(n-1)/2 pairs of n utterances are far from independent (each utterance
    enters n-1 of them), so the textbook BIC, which counts pairs, finds "two
    components" in every large clean speaker: the small skew of its cosines earns
    more likelihood than ln(pairs) costs. By default BIC therefore counts
    utterances: the pair log-likelihoods are scaled to n observations and the
    penalty is k ln(n) (``bic_sample_size="pairs"`` gives the textbook version).
    """
    params, hist, rows = _fit_per_speaker_histograms(x, index, settings, cache)
    params = params.copy()  # the histogram fit's, when shared through the cache
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


def fit_global(x: np.ndarray, index: SpeakerIndex, settings: ReliabilitySettings,
               cache: dict | None = None) -> GmmParams:
    """One GMM over the pairs of all speakers, shared by every speaker (no w = 1 rule:
    the shared fit can judge pairs of small speakers too)."""
    inputs = cache.get("shared_bins_inputs") if cache is not None else None
    if inputs is not None and inputs[0] is x and inputs[1] is index and inputs[2] == settings.n_bins:
        hist = cache["shared_bins"]
    else:
        hist = speaker_histograms(x, index, settings.n_bins, adaptive=False)
    centres, counts = hist.centres()[:1], hist.counts.sum(axis=0, keepdims=True)
    if counts.sum() < 2:
        raise ValueError("reliability: the 'global' estimator needs at least 2 same-label pairs")
    weights, means, variances, loglik = fit_gmm_histograms(centres, counts, settings, hist.width[:1] ** 2 / 12)
    n_spk = len(index)
    params = GmmParams.empty(n_spk)
    _store_fits(params, np.arange(n_spk), (np.repeat(weights, n_spk, 0), np.repeat(means, n_spk, 0),
                                           np.repeat(variances, n_spk, 0), np.repeat(loglik, n_spk)), hist.n_pairs)
    return params


def fit_sklearn(x: np.ndarray, index: SpeakerIndex, settings: ReliabilitySettings,
                cache: dict | None = None) -> GmmParams:
    """The original work's fit: sklearn GaussianMixture per speaker on the exact cosines."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    params = GmmParams.empty(len(index))
    for s, utts, gram, upper in iter_speaker_blocks(x, index):
        cos = gram[upper].astype(np.float64)
        std = cos.std() if cos.size else 0.0
        if _is_degenerate(len(utts), std, settings):
            params.set_single(s, cos.size, cos.mean() if cos.size else 0.0, std ** 2, settings.reg_covar)
            continue
        gmm = GaussianMixture(2, covariance_type="full", n_init=settings.n_init, max_iter=settings.max_iter,
                              tol=settings.tol, reg_covar=settings.reg_covar, random_state=settings.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gmm.fit(cos[:, None])
        fit = (gmm.weights_[None], gmm.means_[:, 0][None], gmm.covariances_.reshape(1, 2),
               np.array([gmm.score(cos[:, None])]))
        _store_fits(params, [s], fit, cos.size)
    return params


# In a reliability dir: the utterance ids of the embeddings' rows, one per line.
# Here, not in purl.pair_weights, so that stage 4 runs without importing torch.
UTTS_FILE = "utts"


# (normalised embeddings, speaker index, settings, cache) -> parameters; the
# cache (None, or a dict shared by fits of the same embeddings and labels) lets
# estimators share work: "histogram" and "bic" run one per-speaker EM.
Estimator = Callable[[np.ndarray, SpeakerIndex, ReliabilitySettings, "dict | None"], GmmParams]
ESTIMATORS: dict[str, Estimator] = {
    "sklearn": fit_sklearn,
    "histogram": fit_histogram,
    "bic": fit_bic,
    "global": fit_global,
}


# --------------------------------------------------------------------------- the weights

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
            raise ValueError(f"reliability: {len(params)} speaker fits for {len(self.index)} speakers")
        self.params = params
        self.estimator = estimator
        self.settings = settings

    @classmethod
    def fit(cls, embeddings: np.ndarray, labels: np.ndarray, estimator: str = "histogram",
            settings: ReliabilitySettings | dict | None = None, *, normalised: bool = False,
            cache: dict | None = None) -> "Reliability":
        """Fits ``estimator``; ``normalised=True`` takes float32 embeddings that are
        already L2-normalised (another fit's ``embeddings``) and shares them
        instead of normalising a copy. ``cache``: one dict passed to several fits
        of the same embeddings array and labels, so that they share work (the
        results are those of separate fits)."""
        if estimator not in ESTIMATORS:
            raise ValueError(f"reliability: unknown estimator '{estimator}'; choose one of {sorted(ESTIMATORS)}")
        if not isinstance(settings, ReliabilitySettings):
            settings = ReliabilitySettings.from_dict(settings)
        embeddings, labels = np.asarray(embeddings), np.asarray(labels)
        if embeddings.ndim != 2 or len(embeddings) != len(labels):
            raise ValueError(f"reliability: embeddings {embeddings.shape} and labels {labels.shape} do not match")
        x = embeddings if normalised and embeddings.dtype == np.float32 else normalise(embeddings)
        if cache is not None:
            # The speaker index is the key of what the estimators share: made once.
            if cache.get("labels") is not labels:
                cache.clear()
                cache["labels"], cache["index"] = labels, SpeakerIndex.from_labels(labels)[0]
            index = cache["index"]
        else:
            index, _ = SpeakerIndex.from_labels(labels)
        return cls(x, labels, ESTIMATORS[estimator](x, index, settings, cache), estimator, settings)

    def cosine(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return np.einsum("pd,pd->p", self.embeddings[i], self.embeddings[j], dtype=np.float64)

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
            raise ValueError(f"reliability: pair ({i[k]}, {j[k]}) has labels {self.labels[i[k]]!r} and "
                             f"{self.labels[j[k]]!r}; only same-label pairs have a weight")
        return self.params.log_odds(spk, self.cosine(i, j))

    def weight(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """w_ij, the clean component's posterior, (P,) float64 in [0, 1]."""
        return expit(self.log_odds(i, j))

    # ----------------------------------------------------------------------- files

    def save(self, directory: str | os.PathLike) -> None:
        """Writes embeddings.npy, gmm.npz and (last) reliability.json, each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _atomic(directory / EMBEDDINGS_FILE, lambda f: np.save(f, np.asarray(self.embeddings, np.float32)))
        arrays = {f.name: getattr(self.params, f.name) for f in dataclasses.fields(self.params)}
        _atomic(directory / PARAMS_FILE, lambda f: np.savez(f, labels=self.labels, speakers=self.index.speakers, **arrays))
        meta = {
            "format": FORMAT_VERSION,
            "estimator": self.estimator,
            "settings": dataclasses.asdict(self.settings),
            "n_utts": int(len(self.labels)),
            "n_speakers": int(len(self.index)),
            "dim": int(self.embeddings.shape[1]),
            "n_pairs": int(self.params.n_pairs.sum()),
            "n_speakers_w1": int(self.params.unit.sum()),
        }
        _atomic(directory / META_FILE, lambda f: f.write(json.dumps(meta, indent=2).encode() + b"\n"))

    @classmethod
    def load(cls, directory: str | os.PathLike, *, mmap: bool = True) -> "Reliability":
        """Reads a directory written by :meth:`save`. ``mmap`` maps the embeddings
        read-only, so data-loader workers share one copy."""
        directory = Path(directory)
        if not (directory / META_FILE).is_file():
            raise FileNotFoundError(f"reliability: {directory / META_FILE} missing; rerun stage 4")
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"reliability: {directory / META_FILE} has format {meta.get('format')}, "
                             f"expected {FORMAT_VERSION}; rerun stage 4")
        embeddings = np.load(directory / EMBEDDINGS_FILE, mmap_mode="r" if mmap else None)
        with np.load(directory / PARAMS_FILE, allow_pickle=False) as z:
            labels = z["labels"]
            params = GmmParams(**{f.name: z[f.name] for f in dataclasses.fields(GmmParams)})
        if embeddings.shape != (meta["n_utts"], meta["dim"]) or len(labels) != meta["n_utts"]:
            raise ValueError(f"reliability: files in {directory} disagree with {META_FILE}; rerun stage 4")
        return cls(embeddings, labels, params, meta["estimator"], ReliabilitySettings.from_dict(meta["settings"]))


def _atomic(path: Path, write: Callable) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- evaluation

_LOGIT_CLIP = 40.0  # |log-odds| beyond this are ties for the histogram AUC
_LOGIT_BINS = 8000


def compare_fits(x: np.ndarray, index: SpeakerIndex, a: GmmParams, b: GmmParams) -> dict[str, np.ndarray]:
    """Two fits of the same speakers on their exact pair cosines, per speaker:
    the max |w_a - w_b| over its pairs and each fit's mean log-likelihood per pair
    (an EM that stopped at another local optimum shows as a different likelihood)."""
    out = {k: np.zeros(len(index)) for k in ("max_abs_diff", "loglik_a", "loglik_b")}
    for s, _, gram, upper in iter_speaker_blocks(x, index):
        cos = gram[upper]
        spk = np.full(cos.size, s)
        out["max_abs_diff"][s] = np.abs(expit(a.log_odds(spk, cos)) - expit(b.log_odds(spk, cos))).max(initial=0.0)
        out["loglik_a"][s] = a.mean_loglik(s, cos) if cos.size else np.nan
        out["loglik_b"][s] = b.mean_loglik(s, cos) if cos.size else np.nan
    return out


def _scan_pairs(rels: list[Reliability], true_labels: np.ndarray | None, threshold: float,
                plot_counts: PlotCounts | None = None) -> list[tuple]:
    """One pass over all pairs for fits that share their embeddings and labels:
    per fit, each utterance's mean w over its pairs (1 where it has none) and,
    with ground truth, log-odds histograms of truly clean and noisy pairs;
    ``plot_counts`` is filled on the way."""
    x, index = rels[0].embeddings, rels[0].index
    n_utts = len(rels[0].labels)
    # Per utterance: each thread writes only its own speakers' utterances.
    w_sum, w_count = np.zeros((len(rels), n_utts)), np.zeros(n_utts)
    cut = np.log(threshold / (1 - threshold))
    true_codes = None if true_labels is None else np.unique(np.asarray(true_labels), return_inverse=True)[1].reshape(-1)

    def scan(speakers):
        """Counts of one thread's speakers (whole numbers: their sum is exact in any order)."""
        hist = np.zeros((len(rels), 2, _LOGIT_BINS))  # [fit, clean/noisy, bin]
        flagged_pairs, flagged_noisy, speakers_flagged = (np.zeros(len(rels), np.int64) for _ in range(3))
        plot = plot_counts.empty_like() if plot_counts is not None else None
        first = second = np.zeros(0, np.intp)  # the pairs (i < j) of the current size
        for s, utts, gram, upper in iter_speaker_blocks(x, index, speakers):
            n = len(utts)
            if n < 2:
                continue
            if len(first) != n * (n - 1) // 2:
                first, second = np.nonzero(upper)
            cos = gram[upper]  # each pair once, not the n x n matrix
            w_count[utts] += n - 1
            noisy = None if true_codes is None else (true_codes[utts][:, None] != true_codes[utts][None, :])[upper]
            noisy_offset = None if noisy is None else noisy * _LOGIT_BINS
            if plot is not None:
                plot.add(s, cos, np.zeros(cos.size, bool) if noisy is None else noisy)
            for k, rel in enumerate(rels):
                lo_pairs = rel.params.log_odds_one(s, cos)
                w = expit(lo_pairs)
                w_sum[k, utts] += np.bincount(first, w, minlength=n) + np.bincount(second, w, minlength=n)
                flag = lo_pairs < cut
                flagged = np.count_nonzero(flag)
                flagged_pairs[k] += flagged
                speakers_flagged[k] += flagged > 0
                if noisy is not None:
                    flagged_noisy[k] += np.count_nonzero(flag & noisy)
                    pos = np.clip((lo_pairs + _LOGIT_CLIP) * (_LOGIT_BINS / (2 * _LOGIT_CLIP)), 0, _LOGIT_BINS - 1).astype(np.intp)
                    pos += noisy_offset  # clean pairs count in row 0, noisy ones in row 1: one bincount
                    hist[k] += np.bincount(pos, minlength=2 * _LOGIT_BINS).reshape(2, _LOGIT_BINS)
        return hist, flagged_pairs, flagged_noisy, speakers_flagged, plot

    parts = in_threads(scan, speaker_parts(index, work_threads()))
    hist, flagged_pairs, flagged_noisy, speakers_flagged = (sum(part[n] for part in parts) for n in range(4))
    if plot_counts is not None:
        for part in parts:
            plot_counts.merge(part[4])
    mean_w = [np.divide(w_sum[k], w_count, out=np.ones(n_utts), where=w_count > 0) for k in range(len(rels))]
    return [(mean_w[k], hist[k], int(flagged_pairs[k]), int(flagged_noisy[k]), int(speakers_flagged[k]))
            for k in range(len(rels))]


def histogram_auc(neg_hist: np.ndarray, pos_hist: np.ndarray) -> float:
    """AUC of a score binned into ascending bins: P(pos > neg) + P(same bin) / 2."""
    n_neg, n_pos = neg_hist.sum(), pos_hist.sum()
    if n_neg == 0 or n_pos == 0:
        return float("nan")
    neg_below = np.cumsum(neg_hist) - neg_hist
    return float((pos_hist * (neg_below + 0.5 * neg_hist)).sum() / (n_neg * n_pos))


def _prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def utterance_weights(rel: Reliability) -> np.ndarray:
    """Each utterance's mean w over its same-label pairs (N,); 1 without pairs."""
    return _scan_pairs([rel], None, 0.5)[0][0]


def suspected_mislabelled(rel: Reliability, threshold: float = 0.5,
                          mean_w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Utterances whose mean w is below ``threshold``, least reliable first:
    (indices, their mean w). ``mean_w``: :func:`utterance_weights` when already
    computed (:func:`evaluate_with_weights` returns it), saving a pass over
    all pairs."""
    if mean_w is None:
        mean_w = utterance_weights(rel)
    idx = np.flatnonzero(mean_w < threshold)
    idx = idx[np.argsort(mean_w[idx], kind="stable")]
    return idx, mean_w[idx]


def evaluate(rel: Reliability, true_labels: np.ndarray | None = None, threshold: float = 0.5) -> dict[str, float]:
    """Detection figures of the weights (see :func:`evaluate_with_weights`)."""
    return evaluate_with_weights(rel, true_labels, threshold)[0]


def evaluate_with_weights(rel: Reliability, true_labels: np.ndarray | None = None,
                          threshold: float = 0.5) -> tuple[dict[str, float], np.ndarray]:
    """Detection figures of the weights, and each utterance's mean w (N,) that
    they come from (what :func:`suspected_mislabelled` ranks).

    A same-label pair is noisy iff its utterances' true speakers differ; an
    utterance is mislabelled iff its label differs from its true speaker. Flags:
    pair w < threshold, utterance mean w < threshold. The pair AUC (of 1 - w for
    noisy pairs) comes from log-odds histograms, exact up to ties within a bin of
    0.01 nats. Without ``true_labels`` only the flagged fractions are returned.
    """
    return evaluate_many([rel], true_labels, threshold)[0]


def evaluate_many(rels: list[Reliability], true_labels: np.ndarray | None = None,
                  threshold: float = 0.5, plot_counts: PlotCounts | None = None) -> list[tuple[dict[str, float], np.ndarray]]:
    """:func:`evaluate_with_weights` of several fits, in one pass over the pairs
    where they share their embeddings and labels (fits made with
    ``normalised=True`` from one another's embeddings); that pass also fills
    ``plot_counts`` (for plot_reliability of one of them)."""
    shared = [r for r in rels if r.embeddings is rels[0].embeddings and np.array_equal(r.labels, rels[0].labels)]
    if len(shared) < len(rels):
        return [evaluate_many([r], true_labels, threshold, plot_counts if k == 0 else None)[0]
                for k, r in enumerate(rels)]
    scans = _scan_pairs(rels, true_labels, threshold, plot_counts)
    return [_figures(rel, scan, true_labels, threshold) for rel, scan in zip(rels, scans)]


def _figures(rel: Reliability, scan: tuple, true_labels: np.ndarray | None, threshold: float):
    mean_w, hist, flagged_pairs, flagged_noisy, speakers_flagged = scan
    n_pairs = int(rel.params.n_pairs.sum())
    utt_flag = mean_w < threshold
    out = {
        "n_pairs": n_pairs,
        "n_utts": len(mean_w),
        "n_speakers": len(rel.index),
        "frac_pairs_flagged": flagged_pairs / max(n_pairs, 1),
        "frac_utts_flagged": float(utt_flag.mean()) if len(mean_w) else 0.0,
        "frac_speakers_flagged": speakers_flagged / max(len(rel.index), 1),
        "frac_speakers_w1": float(rel.params.unit.mean()) if len(rel.params) else 0.0,
    }
    if true_labels is None:
        return out, mean_w
    n_noisy = int(hist[1].sum())
    # Noisy pairs have the LOW log-odds: reversing the bins makes "noisy" the high score.
    pair_auc = histogram_auc(hist[0][::-1], hist[1][::-1])
    out.update(n_noisy_pairs=n_noisy, pair_auc=pair_auc)
    out.update(zip(("pair_precision", "pair_recall", "pair_f1"), _prf(flagged_noisy, flagged_pairs, n_noisy)))
    mislabelled = rel.labels != np.asarray(true_labels)
    out["n_mislabelled"] = int(mislabelled.sum())
    out["utt_auc"] = roc_auc(mislabelled, -mean_w)
    out.update(zip(("utt_precision", "utt_recall", "utt_f1"),
                   _prf(int((utt_flag & mislabelled).sum()), int(utt_flag.sum()), int(mislabelled.sum()))))
    return out, mean_w


# --------------------------------------------------------------------------- generated data

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


# --------------------------------------------------------------------------- plot

def _mixture_curves(params: GmmParams, rows: np.ndarray, grid: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Clean and noisy component densities on ``grid``, summed over speaker ``rows``
    each scaled by ``scale`` (its pairs times the bin width): (2, G)."""
    out = np.zeros((2, len(grid)))
    for chunk in np.array_split(rows, max(1, len(rows) // 512)):
        w, m, v = params.weights[chunk], params.means[chunk], params.variances[chunk]
        dens = w[:, :, None] * np.exp(-0.5 * (grid - m[:, :, None]) ** 2 / v[:, :, None]) / np.sqrt(2 * np.pi * v[:, :, None])
        dens *= scale[chunk][:, None, None]
        is_clean = np.arange(2)[None, :] == params.clean[chunk][:, None]
        out[0] += dens[is_clean].reshape(len(chunk), -1).sum(0)
        out[1] += dens[~is_clean].reshape(len(chunk), -1).sum(0)
    return out


class PlotCounts:
    """What plot_reliability draws from the pairs: the histogram of all
    positive-pair cosines on [-1, 1], [clean, noisy] by truth (all in row 0
    without it), and the cosines of a few example speakers (from the cleanest
    to the noisiest fit). Filled by one scan of the pairs: the plot's own, or
    evaluate_many's (stage 4 then scans the pairs once for both)."""

    def __init__(self, params: GmmParams, n_examples: int = 4, n_bins: int = 200):
        # Examples: fitted noisy weight at evenly spaced ranks, among speakers with a fit.
        fitted = np.flatnonzero(~params.unit & (params.n_pairs > 0))
        noisy_weight = params.weights[fitted, 1 - params.clean[fitted].astype(np.intp)]
        ranked = fitted[np.argsort(noisy_weight, kind="stable")]
        self.examples = (ranked[np.linspace(0, len(ranked) - 1, min(n_examples, len(ranked))).astype(int)]
                         if len(ranked) else np.zeros(0, np.intp))
        self._example_set = set(self.examples.tolist())
        self.n_bins = n_bins
        self.total = np.zeros((2, n_bins))
        self.example_cos: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def empty_like(self) -> "PlotCounts":
        """Counts of the same examples and bins, none yet (one per scanning thread)."""
        other = object.__new__(PlotCounts)
        other.examples, other._example_set, other.n_bins = self.examples, self._example_set, self.n_bins
        other.total = np.zeros_like(self.total)
        other.example_cos = {}
        return other

    def merge(self, other: "PlotCounts") -> None:
        self.total += other.total
        self.example_cos.update(other.example_cos)

    def add(self, s: int, cos: np.ndarray, noisy: np.ndarray) -> None:
        """Speaker s's pair cosines and whether each pair is truly noisy."""
        pos = np.clip(((cos + 1) * (self.n_bins / 2)).astype(np.intp), 0, self.n_bins - 1)
        self.total += np.stack([np.bincount(pos[~noisy], minlength=self.n_bins),
                                np.bincount(pos[noisy], minlength=self.n_bins)])
        if s in self._example_set:
            self.example_cos[s] = (cos, noisy)


def plot_reliability(rel: Reliability, path: str | os.PathLike, true_labels: np.ndarray | None = None,
                     n_examples: int = 4, n_bins: int = 200, counts: PlotCounts | None = None) -> None:
    """PNG: the histogram of all positive-pair cosines with the fitted components
    (per-speaker fits summed, each weighted by its pairs), and below it a few
    speakers from the cleanest to the noisiest fit. With ground truth the
    histograms are split into truly clean and noisy pairs. ``counts``: the
    plot's data already gathered (PlotCounts of rel.params, filled by
    evaluate_many); otherwise the pairs are scanned here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params, index = rel.params, rel.index
    true_codes = None if true_labels is None else np.unique(np.asarray(true_labels), return_inverse=True)[1].reshape(-1)
    if counts is None:
        counts = PlotCounts(params, n_examples, n_bins)
        for s, utts, gram, upper in iter_speaker_blocks(rel.embeddings, index):
            cos = gram[upper]
            noisy = np.zeros(cos.size, bool) if true_codes is None else (true_codes[utts][:, None] != true_codes[utts][None, :])[upper]
            counts.add(s, cos, noisy)
    examples, total, example_cos = counts.examples, counts.total, counts.example_cos
    edges = np.linspace(-1, 1, counts.n_bins + 1)

    fig = plt.figure(figsize=(12, 7.5), constrained_layout=True)
    grid_spec = fig.add_gridspec(2, max(1, len(examples)))
    fine = np.linspace(-1, 1, 801)

    def draw(ax, counts, curves, title):
        labels = ("truly clean pairs", "truly noisy pairs") if true_codes is not None else ("pairs", None)
        # One filled step artist per histogram, not a patch per bin (seconds to draw).
        ax.stairs(counts[0], edges, fill=True, color="tab:blue", alpha=0.5, label=labels[0])
        if true_codes is not None:
            ax.stairs(counts[0] + counts[1], edges, baseline=counts[0], fill=True, color="tab:red", alpha=0.5,
                      label=labels[1])
        ax.plot(fine, curves[0], color="tab:blue", lw=1.5, label="clean component")
        ax.plot(fine, curves[1], color="tab:red", lw=1.5, label="noisy component")
        ax.plot(fine, curves.sum(0), color="black", lw=1, ls="--", label="mixture")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("cosine")
        ax.set_xlim(*xlim)

    filled = np.flatnonzero(total.sum(0))
    xlim = (edges[filled[0]] - 0.05, edges[filled[-1] + 1] + 0.05) if len(filled) else (-1, 1)
    width = edges[1] - edges[0]
    curves = _mixture_curves(params, np.arange(len(params)), fine, params.n_pairs * width)
    ax = fig.add_subplot(grid_spec[0, :])
    draw(ax, total, curves, f"all {int(params.n_pairs.sum())} positive pairs of {len(index)} speakers "
                            f"({rel.estimator}; {int(params.unit.sum())} speakers with w=1)")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    for k, s in enumerate(examples):
        cos, noisy = example_cos[s]
        counts = np.stack([np.histogram(cos[~noisy], edges)[0], np.histogram(cos[noisy], edges)[0]])
        ax = fig.add_subplot(grid_spec[1, k])
        draw(ax, counts, _mixture_curves(params, np.array([s]), fine, params.n_pairs * width),
             f"speaker {index.speakers[s]}: {len(index.utts(s))} utts")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
