"""The w_ij of the pairs in a training batch, from stage 4's reliability dir.
The training callback that gives them to the loss, and refits them during
training, is purl.training.refit.PurlPairWeights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from purl.data.datadir import DataDir, DataDirError
from purl.reliability import UTTS_FILE, Reliability


class PairWeights:
    """:meth:`pair_weights`: (utt indices (B,) of the training set, labels (B,)) -> (B, B) w.

    Entries of pairs with different labels are 1 (the losses ignore them).
    ``rows``: the reliability row of each training-set utterance.
    """

    def __init__(self, reliability: Reliability, rows: np.ndarray):
        self.reliability = reliability
        self.rows = rows

    def pair_weights(self, utts: np.ndarray, labels: np.ndarray) -> torch.Tensor:
        return same_label_weights(utts, labels, lambda a, b: self.reliability.weight(self.rows[a], self.rows[b]))


class UtteranceMask:
    """:meth:`pair_weights` as :class:`PairWeights`', from a set of unreliable
    utterances instead of stage 4's fit: a same-label pair with one of them
    has w = 0 (the PURL loss repels it), every other pair w = 1.
    ``reliable``: (U,) bool, per training-set utterance."""

    def __init__(self, reliable: np.ndarray):
        self.reliable = np.asarray(reliable, dtype=bool)

    def pair_weights(self, utts: np.ndarray, labels: np.ndarray) -> torch.Tensor:
        return same_label_weights(utts, labels, lambda a, b: self.reliable[a] & self.reliable[b])


def utterance_mask_from_file(path: str | os.PathLike, data_dir: str | os.PathLike) -> UtteranceMask:
    """The unreliable utterances listed in ``path`` (ids, whitespace-separated),
    all of them utterances of ``data_dir``."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: no such list of unreliable utterances (purl.unreliable_utts)")
    listed = set(path.read_text().split())
    data = DataDir(data_dir)
    unknown = sorted(listed - set(data.utts))
    if unknown:
        raise DataDirError(f"{path}: '{unknown[0]}' is no utterance of {data.path} ({len(unknown)} such); "
                           "the list must come with the data dir it was written for")
    return UtteranceMask(np.array([u not in listed for u in data.utts]))


def same_label_weights(utts: np.ndarray, labels: np.ndarray, weight) -> torch.Tensor:
    """The (B, B) w of a batch: ``weight(a, b)`` (training-set utterance indices of
    the pairs) for its same-label pairs, both ways; 1 for the others."""
    n = len(utts)
    i, j = same_label_pairs(labels)
    w = np.ones((n, n), dtype=np.float32)
    if len(i):
        w[i, j] = w[j, i] = weight(utts[i], utts[j])
    return torch.from_numpy(w)


def same_label_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (i, j), i != j, of a batch whose labels are equal, each once.

    Found from the labels sorted, in O(B log B + pairs): a batch of 300
    speakers x 2 has 300 such pairs among its 179,700, and testing all of them
    was the lookup's whole cost (3 ms a batch)."""
    n = len(labels)
    if n == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    order = np.argsort(labels, kind="stable")
    ordered = labels[order]
    run_start = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run_end = np.r_[run_start[1:], n]
    # position k of the sorted batch pairs with k+1 .. end of its run - 1
    end_of = np.repeat(run_end, run_end - run_start)
    partners = end_of - np.arange(n) - 1
    first = np.repeat(np.arange(n), partners)
    offset = np.arange(len(first)) - np.repeat(np.cumsum(partners) - partners, partners)
    return order[first], order[first + 1 + offset]


def pair_weights_from_dir(reliability_dir: str | os.PathLike, data_dir: str | os.PathLike) -> PairWeights:
    """Loads stage 4's output for the training dir it was computed on.

    The reliability rows are matched to the training dir by utterance id, so the
    labels it was fitted with must be those of ``data_dir`` (the noisy ones).
    """
    reliability_dir = Path(reliability_dir)
    utts_file = reliability_dir / UTTS_FILE
    if not utts_file.is_file():
        raise DataDirError(f"{utts_file}: missing; run stage 4 (steps/reliability.py) for {data_dir} first")
    rel_utts = utts_file.read_text().split()
    reliability = Reliability.load(reliability_dir)
    data = DataDir(data_dir)
    row_of = {u: r for r, u in enumerate(rel_utts)}
    missing = [u for u in data.utts if u not in row_of]
    if missing:
        raise DataDirError(f"{reliability_dir}: no reliability for '{missing[0]}' of {data.path} "
                           f"({len(missing)} missing); rerun stage 4 on this data dir")
    rows = np.array([row_of[u] for u in data.utts], dtype=np.int64)
    # The fit must group utterances by speaker as the data dir does (the same
    # noisy labels): each speaker of utt2spk maps to exactly one label of the fit.
    speaker_of = {s: n for n, s in enumerate(data.speakers)}
    ours = np.array([speaker_of[data.utt2spk[u]] for u in data.utts])
    pairs = np.unique(np.stack([ours, np.unique(reliability.labels[rows], return_inverse=True)[1].ravel()]), axis=1)
    if pairs.shape[1] != len(speaker_of) or len(np.unique(reliability.labels[rows])) != len(speaker_of):
        raise DataDirError(f"{reliability_dir} was fitted with other speaker labels than {data.path}/utt2spk; "
                           "rerun stage 4 on this data dir")
    return PairWeights(reliability, rows)
