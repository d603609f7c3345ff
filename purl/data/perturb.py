"""Speed perturbation at data-preparation time (Kaldi's perturb_data_dir_speed.sh,
WeSpeaker's speed_perturb): each factor f adds a copy of every utterance played
f times as fast (pitch and tempo both change), filed under a new speaker
``sp<f>-<speaker>``, so a 0.9/1.1 perturbation triples the speakers. The copies
are commands of utils/speed_audio.py in wav.scp, which purl.audio.read_audio
runs in-process (FFmpeg's filters through PyAV; no ffmpeg program); stage 1
computes their features like any other."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from purl.audio import speed_entry
from purl.data.datadir import DataDir, DataDirError, utt2spk_to_spk2utt, write_kv


def perturb_speed(src: str | os.PathLike, dst: str | os.PathLike, factors: Sequence[float] = (0.9, 1.1),
                  sample_rate: int = 16000) -> int:
    """Writes ``dst``: the utterances of ``src`` and a speed-perturbed copy per factor; returns its size."""
    data = DataDir(src)
    if not data.has("wav.scp"):
        raise DataDirError(f"{data.path}/wav.scp: missing (speed perturbation works on the audio, before stage 1)")
    bad = [f for f in factors if not 0.5 <= f <= 2.0 or f == 1.0]
    if bad:
        raise DataDirError(f"speed factor {bad[0]} is not in 0.5..2 (or is 1, the original)")
    wav_scp = dict(data.table("wav.scp"))
    utt2spk = dict(data.utt2spk)
    durations = dict(data.table("utt2dur")) if data.has("utt2dur") else None
    for factor in factors:
        prefix = f"sp{factor:g}-"
        for utt, speaker in data.utt2spk.items():
            wav_scp[prefix + utt] = speed_entry(data.table("wav.scp")[utt], factor, sample_rate)
            utt2spk[prefix + utt] = prefix + speaker
            if durations is not None:
                durations[prefix + utt] = f"{float(data.table('utt2dur')[utt]) / factor:.3f}"
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    write_kv(dst / "wav.scp", wav_scp)
    if durations is not None:
        write_kv(dst / "utt2dur", durations)
    write_kv(dst / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_kv(dst / "utt2spk", utt2spk)  # last: its presence marks the dir complete
    return len(utt2spk)
