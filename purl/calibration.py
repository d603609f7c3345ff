"""Score calibration: scores to log-likelihood ratios (LLRs) a decision can rest on.

Linear calibration is logistic regression of target against non-target on the
raw score, ``llr = scale * score + offset``, fitted on a calibration trial list
by minimising the prior-weighted cross-entropy (Brümmer's FoCal / BOSARIS
objective, as in the Kaldi-era back ends):

    C(w, b) = p / N_tar * sum_tar log(1 + exp(-(l_i + logit p)))
              + (1 - p) / N_non * sum_non log(1 + exp(l_i + logit p)),   l_i = w . x_i + b

so each class weighs what the prior ``p`` gives it, whatever the list's
proportion of targets; at p = 0.5 it is Cllr (in nats). ``l`` is the LLR: the
prior's log-odds enter the objective only. Quality-aware calibration (QMF;
Thienpondt et al. 2020, arXiv 2010.11255, and WeSpeaker's recipe) adds
quality measures of the two sides to ``x``: an offset that moves the decision
threshold with, e.g., the durations of the two utterances.

Arrays only: the caller reads trials, scores and measures (purl/stages/calibrate.py).

    cal = fit_linear(cal_scores, cal_labels, p_target=0.05)
    llr = cal(eval_scores)
    x = qmf_features(scores, enroll_measures, test_measures)   # (T, 1 + 2Q)
    qmf = fit_linear(x, labels, p_target=0.05)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from purl.data.datadir import make_trials
from purl.errors import PurlError
from purl.scoring import cohort_stats, l2_normalise

# Durations beyond this many seconds count as this long: past it, more speech
# hardly changes an embedding (WeSpeaker caps its duration measure at 20 s too).
MAX_DURATION = 20.0


class CalibrationError(PurlError, ValueError):
    """Calibration trials or features a calibration cannot be fitted on or applied to."""


@dataclass(frozen=True)
class LinearCalibration:
    """``llr = features @ weights + bias``; ``names`` says what each feature is
    (``("score",)`` for linear calibration), ``p_target`` the prior it was fitted at."""

    weights: np.ndarray
    bias: float
    p_target: float
    names: tuple[str, ...] = ("score",)

    def __call__(self, features) -> np.ndarray:
        """(N,) scores or (N, F) features -> (N,) float64 LLRs."""
        x = _as_matrix(features)
        if x.shape[1] != self.weights.size:
            raise CalibrationError(f"{x.shape[1]} features for a calibration of {self.weights.size} "
                                   f"({', '.join(self.names)})")
        return x @ self.weights + self.bias

    def to_dict(self) -> dict:
        return {"names": list(self.names), "weights": [float(w) for w in self.weights], "bias": float(self.bias),
                "p_target": float(self.p_target)}

    @classmethod
    def from_dict(cls, d: dict) -> LinearCalibration:
        return cls(np.asarray(d["weights"], dtype=np.float64), float(d["bias"]), float(d["p_target"]),
                   tuple(d.get("names", ("score",))))


def _as_matrix(features) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise CalibrationError(f"features must be (N,) or (N, F), got shape {x.shape}")
    return x


def _log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def fit_linear(features, labels, p_target: float = 0.05, *, names: tuple[str, ...] | None = None,
               l2: float = 1e-6, max_iter: int = 100) -> LinearCalibration:
    """Prior-weighted logistic regression (see the module docstring) by Newton's method.

    features: (N,) scores or (N, F) features; labels: (N,) bool, True for a
    target trial. The features are standardised for the fit and the weights
    mapped back. ``l2`` (on the standardised weights) keeps the fit finite
    when the calibration trials separate perfectly, where the unpenalised
    optimum is an infinite scale (separated trials then get LLRs of tens of
    nats); on overlapping classes 1e-6 moves the fit by about 1e-4 relative
    (1e-4 moved it by up to 1%, at p = 0.05 on simulated Gaussian scores).
    """
    x = _as_matrix(features)
    labels = np.asarray(labels, dtype=bool)
    if labels.shape != (x.shape[0],):
        raise CalibrationError(f"{x.shape[0]} trials but {labels.size} labels")
    n_tar, n_non = int(labels.sum()), int((~labels).sum())
    if n_tar == 0 or n_non == 0:
        raise CalibrationError(f"calibration needs target and non-target trials; got {n_tar} and {n_non}")
    if not 0.0 < p_target < 1.0:
        raise CalibrationError(f"p_target must be in (0, 1), got {p_target}")
    if not np.all(np.isfinite(x)):
        raise CalibrationError("features must be finite")
    names = tuple(names) if names is not None else (("score",) if x.shape[1] == 1 else
                                                     tuple(f"x{j}" for j in range(x.shape[1])))
    centre, spread = x.mean(axis=0), x.std(axis=0)
    flat = np.flatnonzero(spread <= 1e-12 * np.maximum(1.0, np.abs(centre)))
    if flat.size:
        raise CalibrationError(f"feature '{names[flat[0]]}' is constant on the calibration trials "
                               "(it cannot be weighed; leave it out)")
    z = np.hstack([(x - centre) / spread, np.ones((x.shape[0], 1))])
    sign = np.where(labels, 1.0, -1.0)
    weight = np.where(labels, p_target / n_tar, (1.0 - p_target) / n_non)
    prior_logit = np.log(p_target / (1.0 - p_target))
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not penalised

    def objective(theta):
        return -np.sum(weight * _log_sigmoid(sign * (z @ theta + prior_logit))) + 0.5 * np.sum(penalty * theta ** 2)

    theta = np.zeros(z.shape[1])
    value = objective(theta)
    for _ in range(max_iter):
        eta = z @ theta + prior_logit
        p = 1.0 / (1.0 + np.exp(-eta))
        gradient = z.T @ (weight * (p - (sign > 0))) + penalty * theta
        hessian = (z * (weight * p * (1.0 - p))[:, None]).T @ z + np.diag(penalty)
        step = np.linalg.solve(hessian + 1e-12 * np.eye(z.shape[1]), gradient)
        decrement = float(gradient @ step)  # twice the predicted decrease of the objective
        if decrement < 1e-16:  # at the objective's float precision: parameters within about 1e-7
            break
        t = 1.0
        while t > 1e-10:  # backtracking: the objective is convex, a small enough step decreases it
            new_value = objective(theta - t * step)
            if new_value <= value - 0.25 * t * decrement:
                break
            t *= 0.5
        else:
            break  # no step decreases it any more: the optimum within rounding
        theta, value = theta - t * step, new_value
    else:
        raise CalibrationError(f"the calibration fit did not converge in {max_iter} Newton steps")
    weights = theta[:-1] / spread
    return LinearCalibration(weights, float(theta[-1] - weights @ centre), float(p_target), names)


def prior_weighted_cross_entropy(llr, labels, p_target: float) -> float:
    """The fit's objective (without the penalty), in nats, for LLRs: the
    prior-weighted cross-entropy that fit_linear minimises; Cllr * log 2 at 0.5."""
    llr = np.asarray(llr, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    prior_logit = np.log(p_target / (1.0 - p_target))
    return float(-p_target * np.mean(_log_sigmoid(llr[labels] + prior_logit))
                 - (1.0 - p_target) * np.mean(_log_sigmoid(-(llr[~labels] + prior_logit))))


def duration_measure(seconds) -> np.ndarray:
    """The duration as a quality measure: log seconds, capped at MAX_DURATION
    (and floored at 10 ms, one frame)."""
    return np.log(np.clip(np.asarray(seconds, dtype=np.float64), 0.01, MAX_DURATION))


def qmf_features(scores, enroll, test, names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """QMF inputs of T trials: the score, then for each quality measure the
    lower and the higher value of the two sides (symmetric in enrolment and
    test). WeSpeaker also feeds the difference and the ratio; the difference
    is a linear combination of these two, and on log durations so is the
    ratio, so a linear calibration gains nothing from them.

    scores: (T,); enroll, test: (T, Q) measures of each side; names: the Q
    measures' names. Returns ((T, 1 + 2Q) features, their names).
    """
    scores = np.asarray(scores, dtype=np.float64)
    enroll, test = np.asarray(enroll, dtype=np.float64), np.asarray(test, dtype=np.float64)
    if enroll.ndim == 1:
        enroll, test = enroll[:, None], test[:, None]
    if enroll.shape != test.shape or enroll.shape != (scores.size, len(names)):
        raise CalibrationError(f"measures of shapes {enroll.shape} and {test.shape} for {scores.size} trials "
                               f"and {len(names)} measures")
    low, high = np.minimum(enroll, test), np.maximum(enroll, test)
    columns = [scores]
    feature_names = ["score"]
    for q, name in enumerate(names):
        columns += [low[:, q], high[:, q]]
        feature_names += [f"lower {name}", f"higher {name}"]
    return np.column_stack(columns), tuple(feature_names)


def utterance_measures(emb, *, mean=None, durations=None, cohort=None, top_k: int = 300,
                       exclude=None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Quality measures of U utterances for QMF: ((U, Q) values, their Q names).

    - ``duration`` (with ``durations``, (U,) seconds): duration_measure.
    - ``magnitude``: the norm of the embedding minus ``mean`` (WeSpeaker's
      magnitude is of the mean-subtracted embedding too). For embeddings of
      one length it is a function of the cosine to the mean: how typical of
      the training set the utterance is.
    - ``imposter mean`` (with ``cohort``, (C, D)): the mean of the utterance's
      ``top_k`` highest cosines against the cohort, AS-Norm's mu, with
      ``exclude`` as in purl.scoring.cohort_stats.
    """
    emb = np.asarray(emb)
    values, names = [], []
    if durations is not None:
        values.append(duration_measure(durations))
        names.append("duration")
    centred = emb.astype(np.float64) - (0.0 if mean is None else np.asarray(mean, dtype=np.float64))
    values.append(np.linalg.norm(centred, axis=1))
    names.append("magnitude")
    if cohort is not None:
        mu, _ = cohort_stats(l2_normalise(emb, mean), l2_normalise(np.asarray(cohort, dtype=emb.dtype), mean),
                             top_k, exclude=exclude)
        values.append(mu.astype(np.float64))
        names.append("imposter mean")
    return np.column_stack(values), tuple(names)

def held_out_trials(utt2spk: dict[str, str], num_speakers: int, *, max_targets: int = 5000,
                    seed: int = 0) -> tuple[list[tuple[str, str, bool]], list[str]]:
    """A calibration trial list from ``num_speakers`` speakers drawn (seeded)
    from ``utt2spk`` among those with two or more utterances: their target
    pairs (up to ``max_targets``) and as many non-target pairs
    (purl.data.datadir.make_trials). Returns (trials, the drawn speakers).
    All of them when fewer are there."""
    counts: dict[str, int] = {}
    for spk in utt2spk.values():
        counts[spk] = counts.get(spk, 0) + 1
    eligible = sorted(s for s, n in counts.items() if n >= 2)
    if len(eligible) < 2:
        raise CalibrationError(f"only {len(eligible)} speakers with two or more utterances: a calibration "
                               "list needs at least 2 (give a dev trial list instead)")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(eligible, size=min(num_speakers, len(eligible)), replace=False).tolist())
    keep = set(chosen)
    subset = {u: s for u, s in utt2spk.items() if s in keep}
    return make_trials(subset, max_targets=max_targets, seed=seed), chosen


def empirical_llr(llr, labels, num_bins: int = 15, min_count: int = 10):
    """What the trials say each LLR bin's LLR is: for equal-width bins between
    the 1st and 99th percentiles of the LLRs, (mean LLR of the bin, the bin's
    log-odds of target against non-target minus the whole list's (+0.5 per
    class so that a bin of one class stays finite), trials in the bin), for
    bins of at least ``min_count`` trials. Calibrated LLRs lie on the diagonal.
    """
    llr = np.asarray(llr, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    finite = np.isfinite(llr)
    llr, labels = llr[finite], labels[finite]
    lo, hi = np.percentile(llr, [1, 99])
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, num_bins + 1)
    which = np.clip(np.searchsorted(edges, llr, side="right") - 1, 0, num_bins - 1)
    n_tar = np.bincount(which, weights=labels, minlength=num_bins)
    n_all = np.bincount(which, minlength=num_bins).astype(np.float64)
    sums = np.bincount(which, weights=llr, minlength=num_bins)
    keep = n_all >= min_count
    prior = np.log(labels.sum() / max((~labels).sum(), 1))
    observed = np.log((n_tar[keep] + 0.5) / (n_all[keep] - n_tar[keep] + 0.5)) - prior
    return sums[keep] / n_all[keep], observed, n_all[keep].astype(np.int64)
