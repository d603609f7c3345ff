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


# Shorter utterances are dropped at stage 1: the ECAPA-TDNN's dilated
# convolutions need more than 4 frames, and a 0.1 s utterance says little
# about its speaker.
MIN_FRAMES = 10
