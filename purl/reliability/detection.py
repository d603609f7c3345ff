"""Detection metrics of a fit: how well low weights find the truly noisy pairs
and mislabelled utterances, and which utterances are suspected."""

from __future__ import annotations

import numpy as np

from purl.metrics import roc_auc
from purl.reliability.gmm import GmmParams
from purl.reliability.plot import PlotCounts
from purl.reliability.reliability import Reliability  # noqa: F401 (annotations)
from purl.reliability.speakers import SpeakerIndex, iter_speaker_blocks, speaker_parts
from purl.threads import in_threads, work_threads

_LOGIT_CLIP = 40.0  # |log-odds| beyond this are ties for the histogram AUC
_LOGIT_BINS = 8000


def compare_fits(x: np.ndarray, index: SpeakerIndex, a: GmmParams, b: GmmParams) -> dict[str, np.ndarray]:
    """Two fits of the same speakers on their exact pair cosines, per speaker:
    the max |w_a - w_b| over its pairs and each fit's mean log-likelihood per pair
    (an EM that stopped at another local optimum shows as a different likelihood)."""
    from scipy.special import expit  # here: scipy.special takes a quarter second to import

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
    from scipy.special import expit  # here: scipy.special takes a quarter second to import

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
                    pos = np.clip((lo_pairs + _LOGIT_CLIP) * (_LOGIT_BINS / (2 * _LOGIT_CLIP)), 0,
                                  _LOGIT_BINS - 1).astype(np.intp)
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
    computed (:func:`detection_metrics_and_weights` returns it), saving a pass over
    all pairs."""
    if mean_w is None:
        mean_w = utterance_weights(rel)
    idx = np.flatnonzero(mean_w < threshold)
    idx = idx[np.argsort(mean_w[idx], kind="stable")]
    return idx, mean_w[idx]


def detection_metrics(rel: Reliability, true_labels: np.ndarray | None = None, threshold: float = 0.5) -> dict[str, float]:
    """Detection metrics of the weights (see :func:`detection_metrics_and_weights`)."""
    return detection_metrics_and_weights(rel, true_labels, threshold)[0]


def detection_metrics_and_weights(rel: Reliability, true_labels: np.ndarray | None = None,
                          threshold: float = 0.5) -> tuple[dict[str, float], np.ndarray]:
    """Detection metrics of the weights, and each utterance's mean w (N,) that
    they come from (what :func:`suspected_mislabelled` ranks).

    A same-label pair is noisy iff its utterances' true speakers differ; an
    utterance is mislabelled iff its label differs from its true speaker. Flags:
    pair w < threshold, utterance mean w < threshold. The pair AUC (of 1 - w for
    noisy pairs) comes from log-odds histograms, exact up to ties within a bin of
    0.01 nats. Without ``true_labels`` only the flagged fractions are returned.
    """
    return detection_metrics_of_fits([rel], true_labels, threshold)[0]


def detection_metrics_of_fits(rels: list[Reliability], true_labels: np.ndarray | None = None,
                  threshold: float = 0.5, plot_counts: PlotCounts | None = None) -> list[tuple[dict[str, float], np.ndarray]]:
    """:func:`detection_metrics_and_weights` of several fits, in one pass over the pairs
    where they share their embeddings and labels (fits made with
    ``normalised=True`` from one another's embeddings); that pass also fills
    ``plot_counts`` (for plot_reliability of one of them)."""
    shared = [r for r in rels if r.embeddings is rels[0].embeddings and np.array_equal(r.labels, rels[0].labels)]
    if len(shared) < len(rels):
        return [detection_metrics_of_fits([r], true_labels, threshold, plot_counts if k == 0 else None)[0]
                for k, r in enumerate(rels)]
    scans = _scan_pairs(rels, true_labels, threshold, plot_counts)
    return [_metrics(rel, scan, true_labels, threshold) for rel, scan in zip(rels, scans)]


def _metrics(rel: Reliability, scan: tuple, true_labels: np.ndarray | None, threshold: float):
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
        "n_speakers_fit_failed": int(rel.params.failed.sum()),  # among the w = 1 ones (failed_fit: w1)
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
