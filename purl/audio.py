"""Reading audio named by a wav.scp entry: a file path, or a command ending in '|'.

Files libsndfile reads (wav, flac, ogg, opus) go through soundfile; m4a, aac,
mp3 and anything else it cannot read are decoded in-process by PyAV (FFmpeg's
decoders), converted to mono at 16 kHz as ``ffmpeg -ac 1 -ar 16000`` would:
one process per file costs more than the decoding itself.

Samples come back as float32 on the 16-bit scale (-32768..32767), the scale on
which Kaldi's compute-fbank-feats reads wav files, so that features computed from
them equal Kaldi's.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess

import av
import numpy as np
import soundfile as sf

from purl.errors import PurlError

# Extensions libsndfile cannot read: decoded by PyAV without trying soundfile.
AV_EXTENSIONS = (".m4a", ".aac", ".mp3", ".mp4", ".wma")
AV_SAMPLE_RATE = 16000  # what ffmpeg's '-ar 16000' in the pipes this replaces gave
SF_ERR_UNRECOGNISED_FORMAT = 1  # libsndfile's code for a file it has no decoder for


class AudioError(PurlError, ValueError):
    """The audio of an utterance cannot be read or is unusable."""


# Reading as float and scaling by 2**15 gives 16-bit files' samples exactly
# (libsndfile divides them by 2**15) and keeps float and 24/32-bit files'
# values, which a read as int16 turns into zeros or truncates.
INT16_SCALE = 32768.0


def audio_file_problem(path: str) -> str | None:
    """What keeps ``path`` from being an audio file at all, in words ('does not
    exist', 'is empty (0 bytes)', ...), or None: libsndfile and FFmpeg say
    'System error' and 'Invalid data found' for these."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as e:
        return f"cannot be opened ({e.strerror})"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not an audio file"
    if info.st_size == 0:
        return "is empty (0 bytes: an interrupted copy or download?)"
    return None


def unreadable(entry: str, error: Exception) -> AudioError:
    """The AudioError for an entry that could not be read: the file's own
    problem when it has one (missing, empty), else the decoder's message."""
    problem = None if entry.endswith("|") else audio_file_problem(entry)
    return AudioError(f"{entry} {problem}" if problem else f"cannot read {entry}: {error}")


def needs_av(entry: str) -> bool:
    """Whether a wav.scp entry is a file that PyAV, not soundfile, decodes."""
    entry = entry.strip()
    return not entry.endswith("|") and os.path.splitext(entry)[1].lower() in AV_EXTENSIONS


def read_audio_av(path: str, sample_rate: int = AV_SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Decodes the first audio stream of ``path`` with PyAV to mono 16-bit at
    ``sample_rate``: the samples of ``ffmpeg -i path -ac 1 -ar <rate> -f wav -``
    (FFmpeg's own resampler and downmix, so equal within 1 LSB)."""
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise AudioError(f"cannot read {path}: no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
            chunks = []
            for frame in container.decode(audio=0):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except (av.FFmpegError, OSError) as e:
        raise unreadable(path, e) from e
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return samples.astype(np.float32), sample_rate


def read_audio(entry: str) -> tuple[np.ndarray, int]:
    """Returns (samples on the 16-bit scale, sample_rate) of a mono wav.scp entry.

    Refuses (AudioError) several channels, which would otherwise be mixed or
    cut to one without a word, and a file shorter than its header says (a
    truncated copy or download, which libsndfile reads silently as far as it goes).
    """
    entry = entry.strip()
    if needs_av(entry):
        return read_audio_av(entry)
    try:
        if entry.endswith("|"):
            proc = subprocess.run(entry[:-1], shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if proc.returncode != 0:
                tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise AudioError(f"command exited with {proc.returncode}: {entry} ({tail[0]})")
            if not proc.stdout:
                raise AudioError(f"command wrote no audio: {entry}")
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
    except sf.LibsndfileError as e:
        if e.code == SF_ERR_UNRECOGNISED_FORMAT and source is entry and audio_file_problem(entry) is None:
            return read_audio_av(entry)  # a format libsndfile lacks
        raise unreadable(entry, e) from e
    except (RuntimeError, OSError) as e:
        raise unreadable(entry, e) from e
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
    if entry.strip().endswith("|") or needs_av(entry):
        samples, rate = read_audio(entry)
        return len(samples) / rate
    try:
        info = sf.info(entry)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise unreadable(entry, e) from e
    return info.frames / info.samplerate


def write_aac(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = 16000, *,
              container: str = "mp4", bitrate: int = 64000) -> None:
    """Encodes int16 samples, (n,) mono or (n, channels), as AAC (an m4a file,
    VoxCeleb2's format) with PyAV: test and benchmark audio without ffmpeg."""
    samples = np.asarray(samples, dtype=np.int16)
    planar = samples.reshape(len(samples), -1).T  # (channels, n)
    layout = {1: "mono", 2: "stereo"}[len(planar)]
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("aac", rate=sample_rate, layout=layout)
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar), format="s16p", layout=layout)
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
