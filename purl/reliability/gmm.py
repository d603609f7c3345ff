"""Per-speaker 2-component 1-D GMM parameters, histograms of pair cosines, and
EM on those histograms, vectorised across speakers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from purl.reliability.settings import ReliabilitySettings
from purl.reliability.speakers import SpeakerIndex, iter_speaker_blocks, speaker_parts
from purl.threads import in_threads, work_threads

_EPS = 10 * np.finfo(np.float64).eps  # sklearn's guard against empty components
_LOG_2PI = np.log(2 * np.pi)


@dataclass
class GmmParams:
    """One 2-component 1-D GMM per speaker, rows aligned with ``SpeakerIndex.speakers``.

    A speaker with ``unit`` set gets w = 1; its component 0 then holds a single
    Gaussian fitted to its pairs (weight 1), so plots can still draw it.
    ``failed`` marks the unit speakers whose fit raised (settings.failed_fit "w1").
    """

    weights: np.ndarray    # (S, 2)
    means: np.ndarray      # (S, 2)
    variances: np.ndarray  # (S, 2)
    clean: np.ndarray      # (S,) int8, the component with the higher mean
    unit: np.ndarray       # (S,) bool, w = 1 for every pair
    n_pairs: np.ndarray    # (S,) int64
    loglik: np.ndarray     # (S,) mean log-likelihood per pair of the fit (nan if unit)
    failed: np.ndarray     # (S,) bool, the fit raised: w = 1 (also unit)

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
            failed=np.zeros(n_speakers, bool),
        )

    def __len__(self) -> int:
        return len(self.clean)

    def copy(self) -> "GmmParams":
        return GmmParams(**{f.name: getattr(self, f.name).copy() for f in dataclasses.fields(self)})

    def take(self, rows: np.ndarray) -> "GmmParams":
        return GmmParams(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})

    def put(self, rows: np.ndarray, other: "GmmParams") -> None:
        """Sets speakers ``rows`` to the fits of ``other`` (one row each, in order)."""
        for f in dataclasses.fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)

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
    independent, so a caller may fit blocks of them in threads."""
    var_floor = np.zeros(len(x)) if var_floor is None else np.asarray(var_floor, np.float64)
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
