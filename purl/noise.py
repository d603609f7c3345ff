"""Simulated noisy correspondence (utterances filed under the wrong speaker): the
relabelling of stage 2 (purl.stages.noise writes the noisy data dir)."""

from __future__ import annotations

import numpy as np

from purl.errors import PurlError


class NoiseError(PurlError, ValueError):
    """A noise rate or a data dir the simulation cannot use."""


def relabel(utt2spk: dict[str, str], rate: float, seed: int) -> dict[str, str]:
    """Moves exactly round(rate * N) utterances, drawn uniformly with ``seed``, to a
    uniformly drawn different speaker. Returns the new utt2spk."""
    if not 0 <= rate < 1:
        raise NoiseError(f"noise rate {rate} must be in [0, 1)")
    utts = sorted(utt2spk)
    speakers = sorted(set(utt2spk.values()))
    if len(speakers) < 2 and rate > 0:
        raise NoiseError("noise simulation needs at least 2 speakers")
    rng = np.random.default_rng(seed)
    count = int(round(rate * len(utts)))
    chosen = rng.choice(len(utts), size=count, replace=False)
    # An offset in 1..S-1 from the true speaker's index: uniform over the others.
    offsets = rng.integers(1, len(speakers), size=count)
    index = {s: i for i, s in enumerate(speakers)}
    noisy = dict(utt2spk)
    for u, off in zip(chosen, offsets):
        utt = utts[u]
        noisy[utt] = speakers[(index[utt2spk[utt]] + off) % len(speakers)]
    return noisy
