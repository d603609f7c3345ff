"""Simulated label noise (utterances filed under the wrong speaker): the
relabelling of stage 2 (purl.stages.simulate_noise writes the noisy data dir).

Three kinds, each moving exactly round(rate * N) utterances; the utterances
moved are the same draw for every kind at a given seed, so that kinds differ
only in where the utterances go (or come from):

    permute  each to a uniformly drawn other training speaker (the easiest kind)
    similar  each to one of the k training speakers nearest to its true speaker
             (confusable voices: ``speaker_vectors`` say which are near)
    open     each replaced by an utterance of an outsider, a speaker never trained
             on, filed under the replaced utterance's speaker (an interviewer or a
             stranger inside a celebrity's folder); relabelling cannot fix these

Two kinds move whole speakers instead, so their count is round(rate * N) or
more, by less than one speaker:

    merge    two speakers under one label: a speaker's utterances all filed under
             another speaker's label, pairs drawn uniformly (namesakes); the
             absorbed speaker has no label left, so relabelling cannot move its
             utterances anywhere right
    split    one speaker under two labels: a uniformly drawn half of a speaker's
             utterances filed under a new label ``<speaker>-split``; every
             same-label pair stays a same-speaker pair and the noise is in the
             negatives, which PURL's positive-pair reliability cannot see
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from purl.data.datadir import utt2spk_to_spk2utt
from purl.errors import PurlError

NOISE_TYPES = ("permute", "similar", "open", "merge", "split")
SPLIT_SUFFIX = "-split"  # split noise: the label of the second half of a speaker


class NoiseError(PurlError, ValueError):
    """A noise rate or a data dir the simulation cannot use."""


def _check_rate(rate: float) -> None:
    if not 0 <= rate < 1:
        raise NoiseError(f"noise rate {rate} must be in [0, 1)")


def _draw_moved(utt2spk: Mapping[str, str], rate: float, seed: int) -> tuple[list[str], list[str], np.ndarray,
                                                                            np.random.Generator]:
    """(sorted utterances, sorted speakers, indices of the utterances to move, the rng after the draw)."""
    _check_rate(rate)
    utts = sorted(utt2spk)
    speakers = sorted(set(utt2spk.values()))
    if len(speakers) < 2 and rate > 0:
        raise NoiseError("noise simulation needs at least 2 speakers")
    rng = np.random.default_rng(seed)
    count = int(round(rate * len(utts)))
    return utts, speakers, rng.choice(len(utts), size=count, replace=False), rng


def relabel(utt2spk: dict[str, str], rate: float, seed: int) -> dict[str, str]:
    """``permute``: moves exactly round(rate * N) utterances, drawn uniformly with
    ``seed``, to a uniformly drawn different speaker. Returns the new utt2spk."""
    utts, speakers, chosen, rng = _draw_moved(utt2spk, rate, seed)
    # An offset in 1..S-1 from the true speaker's index: uniform over the others.
    offsets = rng.integers(1, len(speakers), size=len(chosen))
    index = {s: i for i, s in enumerate(speakers)}
    noisy = dict(utt2spk)
    for u, off in zip(chosen, offsets):
        utt = utts[u]
        noisy[utt] = speakers[(index[utt2spk[utt]] + off) % len(speakers)]
    return noisy


def nearest_speakers(speaker_vectors: Mapping[str, np.ndarray], k: int) -> dict[str, list[str]]:
    """Each speaker's k nearest other speakers by cosine of their vectors (after
    the mean over speakers is subtracted: what all share says nothing of who is
    near), nearest first; ties go to the earlier speaker in sorted order."""
    speakers = sorted(speaker_vectors)
    if not 1 <= k < len(speakers):
        raise NoiseError(f"k={k} nearest speakers needs 1 <= k < {len(speakers)} (the number of speakers)")
    x = np.stack([np.asarray(speaker_vectors[s], dtype=np.float64) for s in speakers])
    x -= x.mean(axis=0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    cosine = x @ x.T
    np.fill_diagonal(cosine, -np.inf)
    order = np.argsort(-cosine, axis=1, kind="stable")[:, :k]
    return {s: [speakers[j] for j in row] for s, row in zip(speakers, order)}


def relabel_similar(utt2spk: dict[str, str], rate: float, seed: int,
                    speaker_vectors: Mapping[str, np.ndarray], k: int = 5) -> dict[str, str]:
    """``similar``: the utterances ``relabel`` would move (same seed, same draw),
    each to one of the ``k`` speakers nearest to its true speaker, drawn uniformly."""
    missing = sorted(set(utt2spk.values()) - set(speaker_vectors))
    if missing:
        raise NoiseError(f"no speaker vector for speaker '{missing[0]}' ({len(missing)} missing)")
    utts, _, chosen, rng = _draw_moved(utt2spk, rate, seed)
    near = nearest_speakers({s: speaker_vectors[s] for s in set(utt2spk.values())}, k)
    picks = rng.integers(0, k, size=len(chosen))
    noisy = dict(utt2spk)
    for u, pick in zip(chosen, picks):
        utt = utts[u]
        noisy[utt] = near[utt2spk[utt]][pick]
    return noisy


def replace_with_outsiders(utt2spk: dict[str, str], rate: float, seed: int,
                           outsider_utt2spk: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``open``: the utterances ``relabel`` would move (same seed, same draw) leave
    the set; as many outsider utterances, drawn uniformly without replacement,
    take their places under their speakers' labels (each speaker keeps its size).
    Returns (the noisy utt2spk, the outsiders' true utt2spk)."""
    overlap = sorted(set(outsider_utt2spk.values()) & set(utt2spk.values()))
    if overlap:
        raise NoiseError(f"outsider speaker '{overlap[0]}' is also a training speaker; outsiders must be "
                         "speakers never trained on (stage 0's --num-outsider-speakers)")
    shared = sorted(set(outsider_utt2spk) & set(utt2spk))
    if shared:
        raise NoiseError(f"utterance '{shared[0]}' is both a training and an outsider utterance")
    utts, _, chosen, rng = _draw_moved(utt2spk, rate, seed)
    pool = sorted(outsider_utt2spk)
    if len(chosen) > len(pool):
        raise NoiseError(f"rate {rate} needs {len(chosen)} outsider utterances, the outsiders have {len(pool)} "
                         "(lower the rate or hold out more outsider speakers)")
    taken = rng.choice(len(pool), size=len(chosen), replace=False)
    noisy = dict(utt2spk)
    for u, o in zip(chosen, taken):
        label = noisy.pop(utts[u])
        noisy[pool[o]] = label
    return noisy, {pool[o]: outsider_utt2spk[pool[o]] for o in taken}


def _speaker_order(utt2spk: Mapping[str, str], rate: float, seed: int) -> tuple[dict[str, list[str]], list[str], int]:
    """(speaker -> its sorted utterances, the speakers in a seeded uniform order,
    round(rate * N)): what merge and split draw from."""
    _check_rate(rate)
    spk2utt = utt2spk_to_spk2utt(utt2spk)  # speakers and their utterances in sorted order
    order = list(spk2utt)
    rng = np.random.default_rng(seed)
    return spk2utt, [order[i] for i in rng.permutation(len(order))], int(round(rate * len(utt2spk)))


def merge_speakers(utt2spk: dict[str, str], rate: float, seed: int) -> dict[str, str]:
    """``merge``: speakers taken in a seeded uniform order two by two, the second
    of each two filed under the first's label, until at least round(rate * N)
    utterances are under a wrong label. Returns the new utt2spk."""
    spk2utt, order, target = _speaker_order(utt2spk, rate, seed)
    noisy, moved = dict(utt2spk), 0
    pairs = iter(zip(order[0::2], order[1::2]))
    while moved < target:
        pair = next(pairs, None)
        if pair is None:
            raise NoiseError(f"merge noise at rate {rate} needs {target} utterances under another speaker's label; "
                             f"merging half the {len(order)} speakers into the other half moves {moved} "
                             "(lower the rate)")
        host, guest = pair
        for utt in spk2utt[guest]:
            noisy[utt] = host
        moved += len(spk2utt[guest])
    return noisy


def split_speakers(utt2spk: dict[str, str], rate: float, seed: int) -> dict[str, str]:
    """``split``: speakers taken in a seeded uniform order, a uniformly drawn half
    (rounded down) of each one's utterances filed under ``<speaker>-split``, until
    at least round(rate * N) utterances are under it. Returns the new utt2spk."""
    spk2utt, order, target = _speaker_order(utt2spk, rate, seed)
    taken = sorted(s for s in spk2utt if s.endswith(SPLIT_SUFFIX))
    if taken and target:
        raise NoiseError(f"speaker '{taken[0]}': split noise names its new labels '<speaker>{SPLIT_SUFFIX}', "
                         f"so no speaker's name may end in '{SPLIT_SUFFIX}' (rename it)")
    rng = np.random.default_rng([seed, 1])  # the halves: a stream apart from the order's
    noisy, moved = dict(utt2spk), 0
    for spk in order:
        if moved >= target:
            break
        utts = spk2utt[spk]
        for i in rng.choice(len(utts), size=len(utts) // 2, replace=False):
            noisy[utts[i]] = spk + SPLIT_SUFFIX
        moved += len(utts) // 2
    if moved < target:
        raise NoiseError(f"split noise at rate {rate} needs {target} utterances under a second label; half of "
                         f"every speaker's utterances is {moved} (lower the rate)")
    return noisy
