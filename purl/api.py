"""A trained model for new audio: ``purl.load_model(path)``.

    import purl
    model = purl.load_model("exp/supcon/models/final.pt")
    emb = model.embed("a.wav")                     # (embed_dim,) float32
    score = model.score("a.wav", "b.wav")          # cosine, as stage 6 scores
    model.accept(score)                            # True/False at stage 6's EER threshold

Audio goes through what the recipe does to it: any format ``purl/audio.py``
reads (a path, or a wav.scp command ending in '|'), several channels averaged
into one, 80-dim Kaldi fbank (``purl/features.py``), stored and read back
Kaldi-compressed as stage 1 stores it, the utterance mean removed, the whole
utterance through the encoder. So an embedding here equals the one stage 6
extracts from the same file. Audio at another sample rate is resampled to
the model's 16 kHz.

What the model's exp directory adds, when it is there (``exp/<model>/``, the
parent of ``models/final.pt``):

- ``scores/threshold.json`` (written by stage 6, ``steps/score.py``): the EER
  threshold on the first trial list scored and the mean vector subtracted
  before the cosine (the training set's mean embedding). Scores are then
  computed exactly as stage 6 computed them, and ``accept`` decides at that
  threshold.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Union

import kaldiio.matio
import numpy as np
import torch
from scipy.signal import resample_poly

from purl.audio import AudioError, read_audio
from purl.errors import PurlError
from purl.features import compute_fbank, fbank_options, num_frames
from purl.kaldi_io import compress_speech_feature
from purl.stages.training import TrainingOutputs, threshold_file_of
from purl.training.checkpoint import model_from_checkpoint

SAMPLE_RATE = 16000

Audio = Union[str, os.PathLike, np.ndarray, torch.Tensor]


class ModelError(PurlError, ValueError):
    """A model path, its threshold file or an input given to it is unusable."""


def checkpoint_path(path: str | os.PathLike) -> Path:
    """``path`` itself for a checkpoint file; ``<path>/models/final.pt`` for an exp dir."""
    path = Path(path)
    if path.is_dir():
        final = TrainingOutputs(path).final_checkpoint
        if not final.is_file():
            raise ModelError(f"{path} is a directory without {final.relative_to(path)} "
                             "(give a checkpoint file, or an exp dir whose training finished)")
        return final
    if not path.is_file():
        raise ModelError(f"{path}: no such model (give exp/<model>/models/final.pt or exp/<model>)")
    return path


def read_threshold(path: str | os.PathLike) -> dict:
    """The contents of a threshold.json that stage 6 wrote, checked."""
    path = Path(path)
    try:
        info = json.loads(path.read_text())
        threshold = float(info["threshold"])
        mean = None if info.get("mean") is None else np.asarray(info["mean"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: not a threshold file of stage 6 ({e}); rerun steps/score.py, or delete it") from e
    if not math.isfinite(threshold) or (mean is not None and mean.ndim != 1):
        raise ModelError(f"{path}: threshold {threshold} or mean of shape {None if mean is None else mean.shape} "
                         "is unusable; rerun steps/score.py, or delete it")
    return {**info, "threshold": threshold, "mean": mean}


def waveform_to_16bit_scale(samples: np.ndarray | torch.Tensor) -> np.ndarray:
    """1-D samples as float32 on the 16-bit scale Kaldi's fbank reads: integer
    arrays are taken as they are (int16 PCM), float arrays as [-1, 1] audio."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.reshape(-1)
    if samples.ndim != 1:
        raise ModelError(f"a waveform must be 1-D (samples,), got shape {samples.shape} (pass one channel)")
    if np.issubdtype(samples.dtype, np.integer):
        return samples.astype(np.float32)
    if not np.issubdtype(samples.dtype, np.floating):
        raise ModelError(f"a waveform must hold integer or float samples, got dtype {samples.dtype}")
    return samples.astype(np.float32) * 32768.0


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling from ``rate`` to ``target`` Hz (identity when equal)."""
    if rate == target:
        return samples
    if rate <= 0:
        raise ModelError(f"sample rate must be positive, got {rate}")
    g = math.gcd(int(rate), target)
    return resample_poly(samples, target // g, int(rate) // g).astype(np.float32)


def features_of(samples: np.ndarray) -> np.ndarray:
    """16 kHz samples on the 16-bit scale -> (frames, 80) mean-normalised fbank,
    through Kaldi compression as stage 1 stores it."""
    if num_frames(len(samples), SAMPLE_RATE) == 0:
        raise ModelError(f"{len(samples)} samples: shorter than one 25 ms frame")
    feats = compute_fbank(samples, fbank_options(SAMPLE_RATE))
    feats = kaldiio.matio.read_kaldi(io.BytesIO(compress_speech_feature(feats))).astype(np.float32)
    return feats - feats.mean(axis=0, keepdims=True)


class SpeakerModel:
    """A trained encoder with what stage 6 scored it with (mean, threshold)."""

    def __init__(self, encoder: torch.nn.Module, config: dict, *, mean: np.ndarray | None = None,
                 threshold: float | None = None, device: str | torch.device = "cpu", source: str = ""):
        self.encoder = encoder.eval().to(device)
        self.config = config
        self.device = torch.device(device)
        self.embed_dim = int(encoder.embed_dim)
        if mean is not None and mean.shape != (self.embed_dim,):
            raise ModelError(f"{source}: mean vector of dimension {mean.shape} for a model of embed_dim "
                             f"{self.embed_dim} (the threshold file belongs to another model; rerun stage 6)")
        self.mean = mean
        self.threshold = threshold
        self.source = source

    def __repr__(self) -> str:
        return (f"SpeakerModel({self.config['model']['name']}, embed_dim={self.embed_dim}, "
                f"threshold={self.threshold}, source={self.source!r})")

    def load_audio(self, audio: Audio, sample_rate: int | None = None) -> np.ndarray:
        """16 kHz samples on the 16-bit scale from a path / wav.scp entry or a waveform."""
        if isinstance(audio, (str, os.PathLike)):
            if sample_rate is not None:
                raise ModelError("sample_rate is for waveforms; a file carries its own")
            samples, rate = read_audio(str(audio))
        else:
            if sample_rate is None:
                raise ModelError("a waveform needs its sample_rate (e.g. model.embed(x, sample_rate=16000))")
            samples, rate = waveform_to_16bit_scale(audio), sample_rate
        return resample(samples, rate)

    @torch.no_grad()
    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """(frames, 80) normalised fbank -> (embed_dim,) float32 embedding."""
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))[None].to(self.device)
        return self.encoder(x)[0].float().cpu().numpy()

    def embed(self, audio: Audio, sample_rate: int | None = None) -> np.ndarray:
        """The (embed_dim,) float32 embedding of a whole utterance: a file path,
        a wav.scp entry, or a 1-D waveform with its ``sample_rate`` (integer
        samples as 16-bit PCM, float samples in [-1, 1])."""
        try:
            return self.embed_features(features_of(self.load_audio(audio, sample_rate)))
        except ModelError as e:
            raise ModelError(f"{audio if isinstance(audio, (str, os.PathLike)) else 'waveform'}: {e}") from e

    def _embedding(self, item) -> np.ndarray:
        if isinstance(item, np.ndarray) and item.shape == (self.embed_dim,) and item.dtype == np.float32:
            return item
        return self.embed(item, SAMPLE_RATE if isinstance(item, (np.ndarray, torch.Tensor)) else None)

    def score(self, a, b) -> float:
        """Cosine score of two utterances, as stage 6 scores them (the stored
        mean subtracted first, when the model carries one). ``a`` and ``b`` are
        audio (a path, or a 16 kHz waveform) or embeddings from ``embed``."""
        return float(self.score_embeddings(self._embedding(a)[None], self._embedding(b)[None])[0])

    def score_embeddings(self, enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Rowwise scores of (N, D) embeddings, with the model's mean subtracted."""
        from purl.scoring import cosine_score
        return cosine_score(enroll, test, mean=self.mean)

    def accept(self, score: float) -> bool:
        """Whether ``score`` is a target at stage 6's EER threshold (score >= threshold)."""
        if self.threshold is None:
            raise ModelError(f"{self.source}: no threshold stored for this model "
                             "(run stage 6 to write exp/<model>/scores/threshold.json, or give one)")
        return bool(score >= self.threshold)


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu",
               threshold_file: str | os.PathLike | None = None) -> SpeakerModel:
    """The model of a checkpoint (``exp/<model>/models/final.pt``) or an exp dir,
    with the mean and threshold of ``exp/<model>/scores/threshold.json`` when
    stage 6 wrote one (or of ``threshold_file``)."""
    ckpt = checkpoint_path(path)
    encoder, config = model_from_checkpoint(ckpt)
    if threshold_file is None:
        found = threshold_file_of(ckpt)
        threshold_file = found if found is not None and found.is_file() else None
    info = read_threshold(threshold_file) if threshold_file is not None else {"threshold": None, "mean": None}
    return SpeakerModel(encoder, config, mean=info["mean"], threshold=info["threshold"], device=device,
                        source=str(ckpt))


__all__ = ["AudioError", "ModelError", "SpeakerModel", "load_model"]
