"""Stage 2: simulated noisy correspondence (utterances filed under the wrong speaker)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from purl.data.datadir import UTT_FILES, DataDir, utt2spk_to_spk2utt, write_kv


def relabel(utt2spk: dict[str, str], rate: float, seed: int) -> dict[str, str]:
    """Moves exactly round(rate * N) utterances, drawn uniformly with ``seed``, to a
    uniformly drawn different speaker. Returns the new utt2spk."""
    if not 0 <= rate < 1:
        raise ValueError(f"noise rate {rate} must be in [0, 1)")
    utts = sorted(utt2spk)
    speakers = sorted(set(utt2spk.values()))
    if len(speakers) < 2 and rate > 0:
        raise ValueError("noise simulation needs at least 2 speakers")
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


def make_noisy_data_dir(src: str | os.PathLike, dst: str | os.PathLike, rate: float, seed: int) -> dict[str, int]:
    """A copy of ``src`` with noisy labels, and the truth in utt2truespk.

    Utterance ids keep their true speaker prefix (they name files, and the truth
    must stay recoverable), so the noisy dir is the one place where an id need not
    start with its (noisy) speaker; validate_data_dir accepts it because of
    utt2truespk.
    """
    data = DataDir(src)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    noisy = relabel(dict(data.utt2spk), rate, seed)
    for name in UTT_FILES:
        if data.has(name) and name not in ("utt2spk", "utt2truespk"):
            # The same lines: copied, not parsed and rewritten.
            tmp = dst / f"{name}.tmp"
            shutil.copyfile(data.path / name, tmp)
            os.replace(tmp, dst / name)
    write_kv(dst / "utt2truespk", data.utt2spk)
    write_kv(dst / "spk2utt", utt2spk_to_spk2utt(noisy))
    write_kv(dst / "utt2spk", noisy)
    changed = sum(noisy[u] != data.utt2spk[u] for u in noisy)
    return {"utterances": len(noisy), "relabelled": changed}
