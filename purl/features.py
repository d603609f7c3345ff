"""80-dim Kaldi filterbank features, computed with kaldi-native-fbank.

Options are Kaldi's compute-fbank-feats defaults (25 ms Povey window, 10 ms shift,
pre-emphasis 0.97, DC removal, power spectrum, snip-edges) with dither 0 so that
features are reproducible; on 16-bit-scale samples the values equal Kaldi's.
Matrices are stored Kaldi-compressed by purl.kaldi_io (kSpeechFeature, as
``copy-feats --compress``).
"""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np

from purl.errors import PurlError

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


BLOCK_FRAMES = 60000  # frames (10 min) that one kaldi-native-fbank pass computes


def compute_fbank(samples: np.ndarray, opts: knf.FbankOptions, block_frames: int = BLOCK_FRAMES) -> np.ndarray:
    """(samples,) float32 on the 16-bit scale -> (frames, num_mel_bins) float32.

    Computed ``block_frames`` at a time, each block from its own samples: with
    snip-edges framing and no dither a frame depends on its 25 ms alone, so the
    blocks join into what one pass gives, while kaldi-native-fbank, which keeps
    a copy of its input and every frame it made, holds a block at a time (one
    pass over a 2-hour file took 1.1 GB beside the samples)."""
    rate = opts.frame_opts.samp_freq
    shift = int(rate * 0.001 * opts.frame_opts.frame_shift_ms)
    window = int(rate * 0.001 * opts.frame_opts.frame_length_ms)
    total = 1 + (len(samples) - window) // shift if len(samples) >= window else 0
    if total <= block_frames or not opts.frame_opts.snip_edges or opts.frame_opts.dither:
        blocks = [(0, samples)]
    else:
        blocks = [(lo, samples[lo * shift:(min(total, lo + block_frames) - 1) * shift + window])
                  for lo in range(0, total, block_frames)]
    out = None
    for lo, part in blocks:
        fbank = knf.OnlineFbank(opts)
        fbank.accept_waveform(rate, part)
        fbank.input_finished()
        n = fbank.num_frames_ready
        if out is None:
            out = np.empty((n if len(blocks) == 1 else total, opts.mel_opts.num_bins), dtype=np.float32)
        for i in range(n):
            out[lo + i] = fbank.get_frame(i)
    return out


def num_frames(num_samples: int, sample_rate: int) -> int:
    """Frames that snip-edges framing yields for a signal of num_samples."""
    window = int(sample_rate * FRAME_LENGTH_S)
    shift = int(sample_rate * FRAME_SHIFT_S)
    return 0 if num_samples < window else 1 + (num_samples - window) // shift


class FeatureError(PurlError, RuntimeError):
    """Feature extraction of a data dir failed."""


# Shorter utterances are dropped at stage 1: the ECAPA-TDNN's dilated
# convolutions need more than 4 frames, and a 0.1 s utterance says little
# about its speaker.
MIN_FRAMES = 10
