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


# Reading as float and scaling by 2**15 gives 16-bit files' samples exactly
# (libsndfile divides them by 2**15) and keeps float and 24/32-bit files'
# values, which a read as int16 turns into zeros or truncates.
INT16_SCALE = 32768.0


def read_audio(entry: str) -> tuple[np.ndarray, int]:
    """Returns (samples on the 16-bit scale, sample_rate) of a mono wav.scp entry.

    Refuses (AudioError) several channels, which would otherwise be mixed or
    cut to one without a word, and a file shorter than its header says (a
    truncated copy or download, which libsndfile reads silently as far as it goes).
    """
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
        with sf.SoundFile(source) as f:
            if f.channels != 1:
                raise AudioError(
                    f"{entry}: {f.channels} channels; the recipe takes mono audio (pick a channel in wav.scp, "
                    f"e.g. 'sox {entry} -t wav - remix 1 |', or convert the corpus to mono)")
            # A pipe's WAV header may carry placeholder sizes; only a file's header is trusted.
            if not entry.endswith("|") and _truncated(f.extra_info):
                raise AudioError(f"{entry}: truncated (its header promises more audio than the file holds: "
                                 f"{_data_line(f.extra_info)}); copy or download it again")
            samples = f.read(dtype="float32")
            rate = f.samplerate
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"cannot read {entry}: {e}") from e
    samples *= INT16_SCALE
    return samples, rate


def _data_line(extra_info: str) -> str:
    return next((line.strip() for line in extra_info.splitlines() if line.startswith("data")), "")


def _truncated(extra_info: str) -> bool:
    """libsndfile's log of a WAV whose data chunk is shorter than declared:
    'data : 32000 (should be 15978)'."""
    return "should be" in _data_line(extra_info)


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
