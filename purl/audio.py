"""Reading audio named by a wav.scp entry: a file path, or a command ending in '|'.

Files libsndfile reads (wav, flac, ogg, opus) go through soundfile; m4a, aac,
mp3 and anything else it cannot read are decoded in-process by PyAV (FFmpeg's
decoders), converted to mono at 16 kHz as ``ffmpeg -ac 1 -ar 16000`` would:
one process per file costs more than the decoding itself.

Several channels become one by their mean, whatever the container: FFmpeg's
downmix (``-ac 1``) for what PyAV decodes, which for stereo is the mean rounded
to 16 bits, and the mean for what soundfile reads. Averaging keeps every result
the pipes of earlier versions gave (m4a and speed copies went through ``-ac
1``); where the channels hold different talkers (a telephone call), pick one in
wav.scp (``sox f.wav -t wav - remix 1 |``).

A speed-perturbed copy (``speed_entry``, written by steps/perturb_speed.py) is
a command of utils/speed_audio.py that is run here in-process with the same
FFmpeg filters, so no ffmpeg program is needed.

Samples come back as float32 on the 16-bit scale (-32768..32767), the scale on
which Kaldi's compute-fbank-feats reads wav files, so that features computed from
them equal Kaldi's.
"""

from __future__ import annotations

import errno
import io
import os
import shlex
import stat
import subprocess
from typing import BinaryIO

import av
import numpy as np
import soundfile as sf

from purl.errors import PurlError

# Extensions libsndfile cannot read: decoded by PyAV without trying soundfile.
AV_EXTENSIONS = (".m4a", ".aac", ".mp3", ".mp4", ".wma")
AV_SAMPLE_RATE = 16000  # what ffmpeg's '-ar 16000' in the pipes this replaces gave
SF_ERR_UNRECOGNISED_FORMAT = 1  # libsndfile's code for a file it has no decoder for
SPEED_COMMAND = "speed_audio.py"  # utils/speed_audio.py: speed_entry's command, run in-process by read_audio


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
        if e.errno == errno.ELOOP:
            return "is a symbolic link that loops (it leads back to itself: point it at the audio file)"
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


def downmix(samples: np.ndarray) -> np.ndarray:
    """(n,) or (n, channels) samples -> (n,): the mean of the channels."""
    return samples if samples.ndim == 1 else samples.mean(axis=1, dtype=np.float32)


def needs_av(entry: str) -> bool:
    """Whether a wav.scp entry is a file that PyAV, not soundfile, decodes."""
    entry = entry.strip()
    return not entry.endswith("|") and os.path.splitext(entry)[1].lower() in AV_EXTENSIONS


def speed_entry(entry: str, factor: float, sample_rate: int = AV_SAMPLE_RATE) -> str:
    """The wav.scp entry of ``entry`` (a file or a command ending in '|') played
    ``factor`` times as fast, as 16-bit mono at ``sample_rate``."""
    entry = entry.strip()
    options = f"--speed {factor:g} --rate {sample_rate}"
    if entry.endswith("|"):
        return f"{entry} {SPEED_COMMAND} {options} - |"
    return f"{SPEED_COMMAND} {options} {shlex.quote(entry)} |"


def parse_speed_entry(entry: str) -> tuple[str, float, int] | None:
    """(source entry, factor, sample rate) of an entry that ``speed_entry`` wrote;
    None for any other entry (a command of another form is run as it is)."""
    body = entry.strip()
    if not body.endswith("|"):
        return None
    body = body[:-1].rstrip()
    start = body.rfind(f"{SPEED_COMMAND} --speed ")
    if start < 0 or (start > 0 and not body[:start].rstrip().endswith("|")):
        return None
    try:
        words = shlex.split(body[start:])
        if len(words) != 6 or words[3] != "--rate":
            return None
        factor, rate = float(words[2]), int(words[4])
    except ValueError:
        return None
    source = body[:start].rstrip() if start > 0 else words[5]
    if (start > 0) != (words[5] == "-"):
        return None
    return source, factor, rate


def run_pipe(command: str) -> bytes:
    """The standard output of a wav.scp command (``command`` ends in '|')."""
    proc = subprocess.run(command.rstrip()[:-1], shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise AudioError(f"command exited with {proc.returncode}: {command} ({tail[0]})")
    return proc.stdout


def read_audio_av(source: str | BinaryIO, sample_rate: int = AV_SAMPLE_RATE, speed: float = 1.0,
                  name: str = "") -> tuple[np.ndarray, int]:
    """Decodes the first audio stream of ``source`` (a path or a file object)
    with PyAV to mono 16-bit at ``sample_rate``: the samples of
    ``ffmpeg -i path -ac 1 -ar <rate> -f wav -`` (FFmpeg's own resampler and
    downmix, so equal within 1 LSB).

    ``speed`` != 1 plays it that many times as fast (tempo and pitch, as sox's
    ``speed``) through the filters ``asetrate=<decoded rate x speed>,aresample``
    of the ffmpeg pipe ``-af asetrate=...,aresample=<rate> -ac 1 -ar <rate>``
    that speed perturbation ran before. Against that pipe of Debian's ffmpeg
    5.1 (PyAV 18 bundles FFmpeg 8): the same length, samples within 3 LSB and
    0.6 LSB RMS (tests/test_perturb.py; bench/bench_speed_perturb.py): the two
    versions' resamplers round differently.
    """
    name = name or (source if isinstance(source, str) else "the audio stream")
    try:
        with av.open(source) as container:
            if not container.streams.audio:
                raise AudioError(f"cannot read {name}: no audio stream")
            stream = container.streams.audio[0]
            graph = av.filter.Graph()
            nodes = [graph.add_abuffer(template=stream)]
            if speed != 1.0:
                # Relabelled as played at another rate, then resampled back: a faster or slower playback.
                nodes.append(graph.add("asetrate", f"{round(stream.rate * speed)}"))
                nodes.append(graph.add("aresample", f"{sample_rate}"))
            nodes.append(graph.add("aformat", f"sample_fmts=s16:channel_layouts=mono:sample_rates={sample_rate}"))
            nodes.append(graph.add("abuffersink"))
            graph.link_nodes(*nodes).configure()
            chunks = []
            for frame in container.decode(stream):
                graph.push(frame)
                _pull_all(graph, chunks)
            graph.push(None)
            _pull_all(graph, chunks)
    except (av.FFmpegError, OSError) as e:
        raise (unreadable(source, e) if isinstance(source, str) else AudioError(f"cannot read {name}: {e}")) from e
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return samples.astype(np.float32), sample_rate


def _pull_all(graph: av.filter.Graph, chunks: list[np.ndarray]) -> None:
    while True:
        try:
            frame = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return
        chunks.append(frame.to_ndarray().reshape(-1))


def read_speed_entry(source: str | BinaryIO, factor: float, sample_rate: int) -> tuple[np.ndarray, int]:
    """The samples of ``speed_entry(source, factor, sample_rate)``; ``source``
    may also be a file object (utils/speed_audio.py's standard input)."""
    if isinstance(source, str) and source.endswith("|"):
        return read_audio_av(io.BytesIO(run_pipe(source)), sample_rate, factor, name=source)
    return read_audio_av(source, sample_rate, factor)


def read_audio(entry: str) -> tuple[np.ndarray, int]:
    """Returns (samples on the 16-bit scale, sample_rate) of a wav.scp entry,
    several channels averaged into one.

    Refuses (AudioError) a file shorter than its header says (a truncated copy
    or download, which libsndfile reads silently as far as it goes).
    """
    entry = entry.strip()
    if needs_av(entry):
        return read_audio_av(entry)
    speed = parse_speed_entry(entry)
    if speed is not None:
        return read_speed_entry(*speed)
    try:
        if entry.endswith("|"):
            audio = run_pipe(entry)
            if not audio:
                raise AudioError(f"command wrote no audio: {entry}")
            source = io.BytesIO(audio)
        else:
            source = entry
        with sf.SoundFile(source) as f:
            # A pipe's WAV header may carry placeholder sizes; only a file's header is trusted.
            if not entry.endswith("|") and _truncated(f.extra_info):
                raise AudioError(f"{entry}: truncated (its header promises more audio than the file holds: "
                                 f"{_data_line(f.extra_info)}); copy or download it again")
            samples = downmix(f.read(dtype="float32"))
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
              container: str = "mp4", bitrate: int = 64000, codec: str = "aac") -> None:
    """Encodes int16 samples, (n,) mono or (n, channels), as AAC (an m4a file,
    VoxCeleb2's format), or as ``codec`` (e.g. lossless "alac"), with PyAV:
    test and benchmark audio without ffmpeg."""
    samples = np.asarray(samples, dtype=np.int16)
    planar = samples.reshape(len(samples), -1).T  # (channels, n)
    layout = {1: "mono", 2: "stereo"}[len(planar)]
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=sample_rate, layout=layout)
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar), format="s16p", layout=layout)
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
