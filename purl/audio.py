"""Reading audio named by a wav.scp entry: a file path, or a command ending in '|'.

Samples come back as float32 on the 16-bit scale (-32768..32767), the scale on
which Kaldi's compute-fbank-feats reads wav files, so that features computed from
them equal Kaldi's.
"""

from __future__ import annotations

import io
import subprocess

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """The audio of an utterance cannot be read or is unusable."""


def read_audio(entry: str) -> tuple[np.ndarray, int]:
    """Returns (samples, sample_rate) of the first channel of a wav.scp entry."""
    entry = entry.strip()
    try:
        if entry.endswith("|"):
            proc = subprocess.run(entry[:-1], shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if proc.returncode != 0:
                tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise AudioError(f"command exited with {proc.returncode}: {entry} ({tail[0]})")
            source = io.BytesIO(proc.stdout)
        else:
            source = entry
        samples, rate = sf.read(source, dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"cannot read {entry}: {e}") from e
    return samples[:, 0].astype(np.float32), rate


def audio_duration(entry: str) -> float:
    """Seconds of audio, from the file header where possible (no decoding)."""
    if entry.strip().endswith("|"):
        samples, rate = read_audio(entry)
        return len(samples) / rate
    try:
        info = sf.info(entry)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"cannot read {entry}: {e}") from e
    return info.frames / info.samplerate
