"""80-dim filterbank features of stage 1: Kaldi's (the default) or SpeechBrain's.

``kaldi``: computed with kaldi-native-fbank. Options are Kaldi's compute-fbank-feats defaults (25 ms Povey window, 10 ms shift,
pre-emphasis 0.97, DC removal, power spectrum, snip-edges) with dither 0 so that
features are reproducible; on 16-bit-scale samples the values equal Kaldi's.
Matrices are stored Kaldi-compressed by purl.kaldi_io (kSpeechFeature, as
``copy-feats --compress``).

``speechbrain``: the original work's front end (its ``SBFbank``, a wrapper of
SpeechBrain 1.0's ``lobes.features.Fbank``; see ``compute_speechbrain_fbank``),
stored before its ``top_db`` floor, which is taken over what the model sees
(``top_db_floor``, applied by purl.data.dataset where an input is cut).
"""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np

from purl.data.datadir import FEATS_SETTINGS, DataDir
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


FEATURE_TYPES = ("kaldi", "speechbrain")  # stage 1's --feature-type; kaldi is the default

# SpeechBrain's Fbank as the original work configures it (src/data/feature_extractors.py,
# configs/*.yaml: n_fft 400, win_length 400, hop_length 160, f_min 0, f_max 8000, 80 mels)
# with the defaults it leaves: a periodic Hamming window, a centred STFT padded with zeros,
# the power spectrum, SpeechBrain's triangular mel filters, 10*log10 with amin 1e-10 and ref 1.
SB_N_FFT = 400
SB_HOP = 160
SB_AMIN = 1e-10
SB_TOP_DB = 80.0        # Filterbank's default: the floor is max - 80 dB over one input
SB_BLOCK_FRAMES = 10000  # frames computed at a time (33 MB of float64 frames)


def speechbrain_mel_matrix(sample_rate: int = 16000, n_fft: int = SB_N_FFT, n_mels: int = 80,
                           f_min: float = 0.0, f_max: float | None = None) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) float64 filters as SpeechBrain's Filterbank makes
    them (processing/features.py): centres evenly spaced on the mel scale
    2595 log10(1 + f / 700), each a triangle symmetric in Hz whose half-width is
    its distance to the centre below (not Kaldi's asymmetric triangles), over
    n_fft // 2 + 1 bins spaced evenly from 0 to sample_rate // 2."""
    f_max = sample_rate / 2 if f_max is None else f_max
    mel = np.linspace(2595 * np.log10(1 + f_min / 700), 2595 * np.log10(1 + f_max / 700), n_mels + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    band = np.diff(hz)[:-1]
    central = hz[1:-1]
    freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    slope = (freqs[None, :] - central[:, None]) / band[:, None]
    return np.maximum(0.0, np.minimum(slope + 1.0, 1.0 - slope)).T


def speechbrain_num_frames(num_samples: int) -> int:
    """Frames of a centred STFT: one every hop, the first centred on sample 0."""
    return 0 if num_samples < 1 else 1 + num_samples // SB_HOP


def compute_speechbrain_fbank(samples: np.ndarray, sample_rate: int = 16000, num_mel_bins: int = 80,
                              block_frames: int = SB_BLOCK_FRAMES) -> np.ndarray:
    """(samples,) on the 16-bit scale -> (1 + samples // 160, num_mel_bins) float32:
    10 * log10(max(mel power, 1e-10)) of SpeechBrain's Fbank on samples / 32768
    (torchaudio's scale), without its top_db floor (``top_db_floor``).

    Frame t is the Hamming-windowed (periodic, 400 samples) 400 samples centred
    on sample 160 t, zeros beyond either end (torch.stft with center=True,
    pad_mode="constant"); its power spectrum |X|^2 (201 bins) goes through
    ``speechbrain_mel_matrix``. Computed in float64, ``block_frames`` at a time."""
    half = SB_N_FFT // 2
    x = np.zeros(len(samples) + 2 * half, dtype=np.float64)
    x[half:half + len(samples)] = np.asarray(samples, dtype=np.float64) / 32768.0
    n = np.arange(SB_N_FFT)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * n / SB_N_FFT)  # torch.hamming_window(400), periodic
    mel = speechbrain_mel_matrix(sample_rate, SB_N_FFT, num_mel_bins)
    total = speechbrain_num_frames(len(samples))
    out = np.empty((total, num_mel_bins), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, SB_N_FFT)[::SB_HOP]
    for lo in range(0, total, block_frames):
        spec = np.fft.rfft(frames[lo:lo + block_frames] * window, n=SB_N_FFT)
        power = spec.real ** 2 + spec.imag ** 2
        out[lo:lo + block_frames] = 10.0 * np.log10(np.maximum(power @ mel, SB_AMIN))
    return out


def top_db_floor(feats: np.ndarray, top_db: float | None) -> np.ndarray:
    """SpeechBrain's top_db: every value below (the input's maximum over time and
    frequency) - top_db raised to it; None leaves ``feats`` as they are."""
    if top_db is None or not len(feats):
        return feats
    return np.maximum(feats, feats.max() - np.float32(top_db))


def frames_of(num_samples: int, sample_rate: int, feature_type: str = "kaldi") -> int:
    """Frames that ``feature_type`` yields for num_samples."""
    return speechbrain_num_frames(num_samples) if feature_type == "speechbrain" else num_frames(num_samples, sample_rate)


def compute_features(samples: np.ndarray, feature_type: str, sample_rate: int = 16000,
                     num_mel_bins: int = 80) -> np.ndarray:
    """Stage 1's matrix of one utterance (16-bit scale samples) for ``feature_type``."""
    if feature_type == "kaldi":
        return compute_fbank(samples, fbank_options(sample_rate, num_mel_bins))
    if feature_type == "speechbrain":
        return compute_speechbrain_fbank(samples, sample_rate, num_mel_bins)
    raise FeatureError(f"--feature-type {feature_type}: use one of {', '.join(FEATURE_TYPES)}")


# What a model's input is cut from, per feature type: the top_db floor that the
# original work's front end applies over each input (None: none).
TOP_DB = {"kaldi": None, "speechbrain": SB_TOP_DB}


def feature_type_of(data_dir) -> str:
    """The feature type that a data dir's feats.settings records (stage 1 writes
    it, and a dir made from others' lines inherits it): 'kaldi' where none is
    recorded (records from before feature types, and feats.scp made elsewhere)."""
    kind = DataDir(data_dir).feats_record.get("feature_type", "kaldi")
    if kind not in FEATURE_TYPES:
        raise FeatureError(f"{data_dir}/{FEATS_SETTINGS}: feature_type {kind!r} is none of {', '.join(FEATURE_TYPES)}")
    return kind


def check_model_features(model_features: str, checkpoint, data_dir) -> None:
    """A model reads the features it was trained on: FeatureError when those of
    ``data_dir`` are of another type than ``model_features``, what ``checkpoint``
    records (purl.training.checkpoint.checkpoint_feature_type)."""
    features = feature_type_of(data_dir)
    if features != model_features:
        raise FeatureError(
            f"{checkpoint}: a model trained on {model_features} features, but {data_dir} holds {features} features "
            f"({data_dir}/{FEATS_SETTINGS}); give it a data dir of {model_features} features: in a recipe "
            f"--feature-type {model_features} (stage 1 keeps each type's features in data dirs of their own); by hand "
            f"utils/copy_data_dir.py {data_dir} <new-dir>, then steps/make_fbank.sh --feature-type {model_features} "
            "<new-dir>")


class FeatureError(PurlError, RuntimeError):
    """Feature extraction of a data dir failed."""


# Shorter utterances are dropped at stage 1: the ECAPA-TDNN's dilated
# convolutions need more than 4 frames, and a 0.1 s utterance says little
# about its speaker.
MIN_FRAMES = 10
