"""80-dim Kaldi filterbank features, computed with kaldi-native-fbank.

Options are Kaldi's compute-fbank-feats defaults (25 ms Povey window, 10 ms shift,
pre-emphasis 0.97, DC removal, power spectrum, snip-edges) with dither 0 so that
features are reproducible; on 16-bit-scale samples the values equal Kaldi's.
Matrices are stored Kaldi-compressed (kSpeechFeature, as ``copy-feats --compress``).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import kaldi_native_fbank as knf
import kaldiio
import kaldiio.matio
import numpy as np
from kaldiio.compression_header import GlobalHeader, PerColHeader

from purl.errors import PurlError
from purl.audio import AudioError, read_audio
from purl.data.datadir import DataDir, fix_data_dir, read_kv, read_trials, trial_files, write_kv
from purl.settings import audio_digest, differences, read_record, scp_digest, write_record

# kaldiio's numbering follows Kaldi's CompressionMethod enum: 2 = kSpeechFeature,
# what Kaldi's automatic method picks for feature matrices of more than 8 rows.
KALDI_SPEECH_FEATURE_COMPRESSION = 2
FRAME_SHIFT_S = 0.010
FRAME_LENGTH_S = 0.025


def fbank_options(sample_rate: int = 16000, num_mel_bins: int = 80) -> knf.FbankOptions:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = sample_rate
    opts.frame_opts.frame_shift_ms = FRAME_SHIFT_S * 1000
    opts.frame_opts.frame_length_ms = FRAME_LENGTH_S * 1000
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = num_mel_bins
    return opts


def compute_fbank(samples: np.ndarray, opts: knf.FbankOptions) -> np.ndarray:
    """(samples,) float32 on the 16-bit scale -> (frames, num_mel_bins) float32."""
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(opts.frame_opts.samp_freq, samples)
    fbank.input_finished()
    n = fbank.num_frames_ready
    out = np.empty((n, opts.mel_opts.num_bins), dtype=np.float32)
    for i in range(n):
        out[i] = fbank.get_frame(i)
    return out


def num_frames(num_samples: int, sample_rate: int) -> int:
    """Frames that snip-edges framing yields for a signal of num_samples."""
    window = int(sample_rate * FRAME_LENGTH_S)
    shift = int(sample_rate * FRAME_SHIFT_S)
    return 0 if num_samples < window else 1 + (num_samples - window) // shift


# Kaldi's CompressedMatrix, kSpeechFeature: each column is quantised piecewise
# linearly between its 0th, 25th, 75th and 100th percentiles into 64, 128 and
# 63 one-byte steps. The tables go with the three pieces.
_PIECE_STEPS = np.array([64.0, 128.0, 63.0], dtype=np.float32)
_PIECE_OFFSET = np.array([0.5, 64.5, 192.5], dtype=np.float32)  # + 0.5: round to nearest
_PIECE_MIN = np.array([0.0, 64.0, 192.0], dtype=np.float32)
_PIECE_MAX = np.array([64.0, 192.0, 255.0], dtype=np.float32)


def compress_speech_feature(feats: np.ndarray) -> bytes:
    """``feats`` (frames, bins) float32 as a binary Kaldi ``CM`` matrix (kSpeechFeature).

    The same bytes as ``kaldiio.matio.write_array(f, feats, compression_method=2)``
    (tests/test_features.py checks it), about three times as fast: one sort per
    column instead of np.partition (which is ten times slower than a SIMD sort
    here), and each value mapped by its own piece only, not by all three.
    Kaldi's ``copy-feats --compress`` reads it; kaldiio.load_mat decompresses it.
    """
    rows = feats.shape[0]
    if rows < 5:  # Kaldi's special case for tiny matrices: leave it to kaldiio
        buffer = io.BytesIO()
        kaldiio.matio.write_array(buffer, feats, compression_method=KALDI_SPEECH_FEATURE_COMPRESSION)
        return buffer.getvalue()
    header = GlobalHeader.compute(feats, KALDI_SPEECH_FEATURE_COMPRESSION)
    columns = np.ascontiguousarray(feats.T)  # Kaldi stores the bytes column by column
    quarter = rows // 4
    ranked = np.sort(columns, axis=1)[:, [0, quarter, 3 * quarter, rows - 1]]
    # Percentiles on the header's 16-bit grid, strictly increasing (as Kaldi does).
    p0, p25, p75, p100 = header.float_to_uint(ranked).astype(np.int64).T
    p0 = np.minimum(p0, 65532)
    p25 = np.minimum(np.maximum(p25, p0 + 1), 65533)
    p75 = np.minimum(np.maximum(p75, p25 + 1), 65534)
    p100 = np.maximum(p100, p75 + 1)
    p0, p25, p75, p100 = (header.uint_to_float(p)[:, None] for p in (p0, p25, p75, p100))
    col_header = PerColHeader(p0, p25, p75, p100)

    piece = (columns >= p75).view(np.uint8) + 1  # 0: below p25, 1: [p25, p75), 2: from p75 on
    piece -= (columns < p25).view(np.uint8)
    index = piece * len(columns) + np.arange(len(columns))[:, None]
    start = np.concatenate([p0, p25, p75]).ravel()
    width = np.concatenate([p25 - p0, p75 - p25, p100 - p75]).ravel()
    # kaldiio's arithmetic, in its order: (x - start) / width * steps + offset, clipped
    values = columns - start.take(index)
    values /= width.take(index)
    values *= _PIECE_STEPS.take(piece)
    values += _PIECE_OFFSET.take(piece)
    np.clip(values, _PIECE_MIN.take(piece), _PIECE_MAX.take(piece), out=values)

    buffer = io.BytesIO()
    buffer.write(b"\0B")
    header.write(buffer)
    col_header.write(buffer, header)
    buffer.write(values.astype(np.uint8).tobytes())
    return buffer.getvalue()


class ArkWriter:
    """Writes ``utt`` + binary matrix entries to an ark, Kaldi-compressed
    (kSpeechFeature) or as plain float matrices, and ``utt ark:offset`` lines
    to its scp, naming the ark as ``ark_name`` (the final name when the ark is
    written under a temporary one)."""

    def __init__(self, ark_path: str | os.PathLike, scp_path: str | os.PathLike, ark_name: str | os.PathLike,
                 compress: bool = True):
        self.ark = open(ark_path, "wb")
        self.scp = open(scp_path, "w", encoding="utf-8")
        self.ark_name = str(ark_name)
        self.compress = compress

    def __call__(self, utt: str, feats: np.ndarray) -> None:
        self.ark.write(f"{utt} ".encode())
        self.scp.write(f"{utt} {self.ark_name}:{self.ark.tell()}\n")
        if self.compress:
            self.ark.write(compress_speech_feature(feats))
        else:
            kaldiio.matio.write_array(self.ark, feats)

    def __enter__(self) -> "ArkWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.ark.close()
        self.scp.close()


class FeatureError(PurlError, RuntimeError):
    """Feature extraction of a data dir failed."""


@dataclass
class FbankJobResult:
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)


# Shorter utterances are dropped at stage 1: the ECAPA-TDNN's dilated
# convolutions need more than 4 frames, and a 0.1 s utterance says little
# about its speaker.
MIN_FRAMES = 10


def fbank_job_settings(wav_scp: dict[str, str], *, sample_rate: int, num_mel_bins: int, compress: bool,
                       min_frames: int) -> dict:
    """What a job's (or a whole dir's) features are made from: the options, the
    wav.scp entries and the audio files they name (see purl.settings)."""
    text = "".join(f"{u} {v}\n" for u, v in wav_scp.items())
    return {
        "sample_rate": sample_rate, "num_mel_bins": num_mel_bins, "compress": compress, "min_frames": min_frames,
        "frame_shift_s": FRAME_SHIFT_S, "frame_length_s": FRAME_LENGTH_S, "dither": 0.0,
        "wav_scp": hashlib.sha1(text.encode()).hexdigest(), "audio": audio_digest(wav_scp),
    }


def make_fbank_job(
    wav_scp: dict[str, str],
    ark_path: str | os.PathLike,
    *,
    sample_rate: int = 16000,
    num_mel_bins: int = 80,
    compress: bool = True,
    min_frames: int = MIN_FRAMES,
    on_utt: Callable[[], None] | None = None,
) -> FbankJobResult:
    """Computes features for every entry of ``wav_scp`` into one ark with its scp.

    Writes ``<ark>`` and ``<ark minus .ark>.scp``, ``.utt2num_frames``, ``.utt2dur``,
    ``.failed`` (utt and reason) and ``.settings`` (what the job was made from,
    purl.settings) beside it. All appear only when the job is complete
    (temporary names, then renames, the settings record last: a rerun takes a job
    as done only when its record equals the one it would write). An utterance
    whose audio is unreadable, empty, shorter than ``min_frames``, of several
    channels or of another sample rate is recorded as failed, not fatal; one
    whose features are not finite (NaN or inf samples) fails the job, naming it.
    """
    ark_path = Path(ark_path)
    base = ark_path.with_suffix("")
    outputs = {ext: Path(f"{base}{ext}") for ext in (".utt2num_frames", ".utt2dur", ".failed", ".scp", ".settings")}
    outputs[".settings"].unlink(missing_ok=True)  # the old record must not vouch for what is written now
    # Taken before reading: audio changed during the job makes the record stale, not wrong.
    settings = fbank_job_settings(wav_scp, sample_rate=sample_rate, num_mel_bins=num_mel_bins,
                                  compress=compress, min_frames=min_frames)
    tmp = {ext: p.with_name(p.name + ".tmp") for ext, p in outputs.items()}
    tmp_ark = ark_path.with_name(ark_path.name + ".tmp")
    opts = fbank_options(sample_rate, num_mel_bins)
    result = FbankJobResult()
    frames_lines, dur_lines = [], []
    try:
        with ArkWriter(tmp_ark, tmp[".scp"], ark_name=ark_path, compress=compress) as writer:
            for utt, entry in wav_scp.items():
                try:
                    samples, rate = read_audio(entry)
                    if rate != sample_rate:
                        raise AudioError(
                            f"sample rate {rate} Hz, expected {sample_rate} Hz "
                            f"(resample the corpus, e.g. with 'sox in.wav -r {sample_rate} out.wav', or set --sample-rate)"
                        )
                    frames = num_frames(len(samples), rate)
                    if frames < min_frames:
                        raise AudioError(f"too short: {len(samples) / rate:.3f} s gives {frames} frames, "
                                         f"fewer than --min-frames {min_frames}")
                    if not np.isfinite(samples).all():
                        raise FeatureError(f"{utt}: NaN or inf samples in {entry} (its features would not be "
                                           "finite); fix or remove this file (utils/subset_data_dir.py)")
                    feats = compute_fbank(samples, opts)
                except AudioError as e:
                    result.failed[utt] = str(e)
                else:
                    writer(utt, feats)
                    frames_lines.append(f"{utt} {len(feats)}\n")
                    dur_lines.append(f"{utt} {len(samples) / rate:.3f}\n")
                    result.done += 1
                if on_utt is not None:
                    on_utt()
        tmp[".utt2num_frames"].write_text("".join(frames_lines))
        tmp[".utt2dur"].write_text("".join(dur_lines))
        tmp[".failed"].write_text("".join(f"{u} {why}\n" for u, why in result.failed.items()))
    except BaseException:
        for path in [tmp_ark, *tmp.values()]:
            path.unlink(missing_ok=True)
        raise
    os.replace(tmp_ark, ark_path)
    for ext in (".utt2num_frames", ".utt2dur", ".failed", ".scp"):
        os.replace(tmp[ext], outputs[ext])
    write_record(outputs[".settings"], settings)
    return result


def fbank_dir_for(data_dir: str | os.PathLike, fbank_root: str | os.PathLike) -> Path:
    """``<fbank_root>/<name>_<8 hex digits of the data dir's absolute path>``:
    data/a/train and data/b/train never share (and overwrite) one set of arks."""
    data_dir = Path(data_dir).resolve()
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:8]
    return Path(fbank_root) / f"{data_dir.name}_{digest}"


FEATS_SETTINGS = "feats.settings"  # the data dir's record of what its feats.scp was made from


def feats_status(data_dir: str | os.PathLike, settings: dict) -> tuple[str, list[str]]:
    """Whether a data dir's feats.scp is stage 1's output for ``settings``:
    ('missing' | 'complete' | 'foreign' | 'changed', what differs)."""
    data = Path(data_dir)
    if not (data / "feats.scp").is_file():
        return "missing", []
    record = read_record(data / FEATS_SETTINGS)
    if record is None:
        return "foreign", []
    expected = {**settings, "feats_scp": scp_digest(data / "feats.scp")}
    diff = differences(record, expected)
    return ("changed", diff) if diff else ("complete", [])


def merge_fbank_jobs(data_dir: str | os.PathLike, fbank_dir: str | os.PathLike, nj: int, *,
                     max_fail_frac: float = 0.01, settings: dict | None = None) -> list[str]:
    """Merges the outputs of ``nj`` finished jobs into the data dir.

    Writes utt2num_frames, utt2dur (when the dir has none) and feats.scp last, since
    a complete feats.scp is what tells later stages (and reruns) that stage 1 is
    done; with ``settings`` (the options of fbank_job_settings) the record of the
    merged dir goes into feats.settings just before feats.scp. Failed utterances
    are listed in ``<data>/log/fbank_failed``; when they are more than
    ``max_fail_frac`` of the dir, or a trial list of the dir names one of them,
    nothing is merged and FeatureError is raised, otherwise they are dropped from
    the dir. Returns the failed ids.
    """
    data = DataDir(data_dir)
    fbank_dir = Path(fbank_dir)
    merged: dict[str, dict[str, str]] = {".scp": {}, ".utt2num_frames": {}, ".utt2dur": {}}
    failed: dict[str, str] = {}
    for n in range(1, nj + 1):
        base = fbank_dir / f"raw_fbank.{n}"
        for ext, table in merged.items():
            if Path(f"{base}{ext}").stat().st_size > 0:
                table.update(read_kv(f"{base}{ext}", check_sorted=False))
        with open(f"{base}.failed", encoding="utf-8") as f:
            for line in f:
                utt, why = line.rstrip("\n").split(" ", 1)
                failed[utt] = why
    log_dir = data.path / "log"
    log_dir.mkdir(exist_ok=True)
    write_kv(log_dir / "fbank_failed", failed)
    total = len(data)
    listing = "\n".join(f"  {u}: {why}" for u, why in list(failed.items())[:20])
    more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
    if len(failed) > max_fail_frac * total:
        raise FeatureError(
            f"{len(failed)} of {total} utterances of {data.path} failed, more than --max-fail-frac "
            f"{max_fail_frac} allows (all in {log_dir / 'fbank_failed'}):\n{listing}{more}\n"
            "Fix or remove these files (utils/subset_data_dir.py), or raise --max-fail-frac."
        )
    for trials in trial_files(data.path):
        for lineno, (u1, u2, _) in enumerate(read_trials(trials), 1):
            lost = next((u for u in (u1, u2) if u in failed), None)
            if lost is not None:
                raise FeatureError(
                    f"{trials} line {lineno}: names '{lost}', which has no features ({failed[lost]}); "
                    f"dropping it would break the trial list. Fix the audio, or remove the utterance and its "
                    f"trials (utils/subset_data_dir.py, then regenerate {trials.name}). Failed: {log_dir / 'fbank_failed'}"
                )
    write_kv(data.path / "utt2num_frames", merged[".utt2num_frames"])
    if not data.has("utt2dur"):
        write_kv(data.path / "utt2dur", merged[".utt2dur"])
    if failed:
        fix_data_dir(data.path)  # utt2num_frames lacks them: dropped everywhere, old files backed up
    scp_tmp = data.path / "feats.scp.tmp"
    write_kv(scp_tmp, merged[".scp"])
    (data.path / FEATS_SETTINGS).unlink(missing_ok=True)
    if settings is not None:
        # The record is of the dir as merged (failed utterances dropped) and
        # vouches for this feats.scp only: a kill before the rename leaves a
        # record that no feats.scp matches, so the rerun redoes the merge.
        wav_scp = read_kv(data.path / "wav.scp")
        record = fbank_job_settings(wav_scp, **settings)
        write_record(data.path / FEATS_SETTINGS, {**record, "feats_scp": scp_digest(scp_tmp)})
    os.replace(scp_tmp, data.path / "feats.scp")
    return list(failed)
