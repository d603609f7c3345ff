"""A trained model for new audio: ``purl.load_model(path)``.

    import purl
    model = purl.load_model("exp/supcon/models/final.pt")
    emb = model.embed("a.wav")                     # (embed_dim,) float32
    score = model.score("a.wav", "b.wav")          # the LLR of stage 6's calibration (else the cosine)
    model.accept(score)                            # True/False at the Bayes threshold of the prior
    model.accept(score, p_target=0.01)             # ... of another prior
    model.accept(score, at="eer")                  # at stage 6's EER threshold

Audio goes through what the recipe does to it: any format ``purl/audio.py``
reads (a path, or a wav.scp command ending in '|'), several channels averaged
into one, 80-dim Kaldi fbank (``purl/features.py``), stored and read back
Kaldi-compressed as stage 1 stores it, the utterance mean removed, the whole
utterance through the encoder (one over 10 minutes in windows, as stage 6
embeds it: ``purl/embed.py``). So an embedding here equals the one stage 6
extracts from the same file. Audio at another sample rate is resampled to
the model's 16 kHz.

What the model's exp directory adds, when it is there (``exp/<model>/``, the
parent of ``models/final.pt``):

- ``scores/threshold.json`` (written by stage 6, ``steps/score.py``): the EER
  threshold on the first trial list scored and the mean vector subtracted
  before the cosine (the training set's mean embedding). Scores are then
  computed exactly as stage 6 computed them.
- its ``calibration`` (added by ``steps/calibrate.py``): the cosine's linear
  calibration, ``llr = scale * cosine + offset``, and the prior it was fitted
  at. ``score`` is then that log-likelihood ratio, and ``accept`` decides at
  the Bayes threshold ``log(C_fa (1 - p) / (C_miss p))`` of a prior p (by
  default the fitted one). A threshold.json without it (stage 6 before
  calibration existed) still loads: scores are cosines and ``accept``
  decides at the EER threshold, as before.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch

from purl.audio import AudioError, read_audio
from purl.embed import LONG_FRAMES, embed_long
from purl.errors import PurlError
from purl.features import compute_fbank, fbank_options, num_frames
from purl.kaldi_io import compress_speech_feature, read_compressed
from purl.metrics import bayes_threshold
from purl.stages.exp_layout import TrainingOutputs
from purl.stages.score import threshold_file_of
from purl.training.checkpoint import checkpoint_feature_type, load_checkpoint, model_of

SAMPLE_RATE = 16000
DECIDE_AT = ("bayes", "eer")

log = logging.getLogger(__name__)

Audio = Union[str, os.PathLike, np.ndarray, torch.Tensor]


class ModelError(PurlError, ValueError):
    """A model path, its threshold file or an input given to it is unusable."""


def checkpoint_path(path: str | os.PathLike) -> Path:
    """``path`` itself for a checkpoint file; for an exp dir (or its ``models/``)
    ``models/final_scoring.pt``, stage 6's self-contained copy, when it is there
    and not older than ``models/final.pt`` (a retrained model stage 6 has not
    scored yet), else ``models/final.pt``."""
    path = Path(path)
    if path.is_dir():
        outputs = TrainingOutputs.of_dir(path)
        scoring, final = outputs.scoring_checkpoint, outputs.final_checkpoint
        if scoring.is_file() and (not final.is_file() or scoring.stat().st_mtime_ns >= final.stat().st_mtime_ns):
            return scoring
        if not outputs.final_checkpoint.is_file():
            raise ModelError(f"{path} is a directory without {outputs.final_checkpoint.relative_to(outputs.exp_dir)} "
                             "(give a checkpoint file, or an exp dir whose training finished)")
        return outputs.final_checkpoint
    if not path.is_file():
        raise ModelError(f"{path}: no such model (give exp/<model>/models/final.pt or exp/<model>)")
    return path


def read_threshold(path: str | os.PathLike) -> dict:
    """The contents of a threshold.json that stage 6 wrote, checked."""
    path = Path(path)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: not a threshold file of stage 6 ({e}); rerun steps/score.py, or delete it") from e
    return scoring_info(info, path)


def scoring_info(info: dict, path: str | os.PathLike) -> dict:
    """threshold.json's content (from the file, or a checkpoint's "scoring"), checked."""
    try:
        threshold = float(info["threshold"])
        mean = None if info.get("mean") is None else np.asarray(info["mean"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: not a threshold file of stage 6 ({e}); rerun steps/score.py, or delete it") from e
    if not math.isfinite(threshold) or (mean is not None and mean.ndim != 1):
        raise ModelError(f"{path}: threshold {threshold} or mean of shape {None if mean is None else mean.shape} "
                         "is unusable; rerun steps/score.py, or delete it")
    calibration = info.get("calibration")
    if calibration is not None:
        try:
            calibration = {k: float(calibration[k]) for k in ("scale", "offset", "p_target")}
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{path}: calibration without a usable {e}; rerun steps/calibrate.py") from e
        if not (calibration["scale"] > 0 and math.isfinite(calibration["scale"]) and math.isfinite(calibration["offset"])
                and 0 < calibration["p_target"] < 1):
            raise ModelError(f"{path}: calibration {calibration} is unusable (scale > 0, p_target in (0, 1)); "
                             "rerun steps/calibrate.py")
        calibration = {**info["calibration"], **calibration}
    return {**info, "threshold": threshold, "mean": mean, "calibration": calibration}


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
    from scipy.signal import resample_poly  # here: scipy.signal takes a second to import

    g = math.gcd(int(rate), target)
    return resample_poly(samples, target // g, int(rate) // g).astype(np.float32)


def features_of(samples: np.ndarray) -> np.ndarray:
    """16 kHz samples on the 16-bit scale -> (frames, 80) mean-normalised fbank,
    through Kaldi compression as stage 1 stores it."""
    if num_frames(len(samples), SAMPLE_RATE) == 0:
        raise ModelError(f"{len(samples)} samples: shorter than one 25 ms frame")
    feats = compute_fbank(samples, fbank_options(SAMPLE_RATE))
    del samples  # a 2-hour file's 460 MB, not needed from here on
    feats = read_compressed(io.BytesIO(compress_speech_feature(feats)))
    return feats - feats.mean(axis=0, keepdims=True)


class SpeakerModel:
    """A trained encoder with what stage 6 scored it with (mean, EER threshold,
    calibration: ``{"scale", "offset", "p_target"}`` of the cosine's LLR)."""

    def __init__(self, encoder: torch.nn.Module, config: dict, *, mean: np.ndarray | None = None,
                 threshold: float | None = None, calibration: dict | None = None,
                 device: str | torch.device = "cpu", source: str = "", max_frames: int = LONG_FRAMES):
        self.encoder = encoder.eval().to(device)
        self.max_frames = max_frames  # longer inputs are embedded in windows (purl.embed.embed_long)
        self.config = config
        self.device = torch.device(device)
        self.embed_dim = int(encoder.embed_dim)
        if mean is not None and mean.shape != (self.embed_dim,):
            raise ModelError(f"{source}: mean vector of dimension {mean.shape} for a model of embed_dim "
                             f"{self.embed_dim} (the threshold file belongs to another model; rerun stage 6)")
        self.mean = mean
        self.threshold = threshold
        self.calibration = calibration
        self.source = source
        # Said once, at the first score, when the model carries nothing of stage 6 (embedding needs none of it).
        self.missing_scoring_note: str | None = None

    @property
    def calibrated(self) -> bool:
        """Whether ``score`` gives log-likelihood ratios (stage 6 calibrated the model)."""
        return self.calibration is not None

    def __repr__(self) -> str:
        calibration = (f"llr = {self.calibration['scale']:.4g} x cosine {self.calibration['offset']:+.4g}"
                       if self.calibrated else "missing")
        return (f"SpeakerModel({self.config['model']['name']}, embed_dim={self.embed_dim}, "
                f"threshold={self.threshold}, calibration: {calibration}, source={self.source!r})")

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
        if len(feats) > self.max_frames:
            return embed_long(self.encoder, feats, max_frames=self.max_frames, device=self.device).cpu().numpy()
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

    def features(self, audio: Audio, name: str | None = None) -> np.ndarray:
        """The (frames, 80) normalised fbank ``embed`` feeds the encoder; an
        unreadable file is a ModelError starting with ``name`` (default: the path)."""
        try:
            return features_of(self.load_audio(audio))
        except (AudioError, ModelError) as e:
            raise ModelError(f"{name if name is not None else audio}: {e}") from e

    @torch.no_grad()
    def embed_many(self, audio: Sequence[Audio], *, names: Sequence[str] | None = None, nj: int = 1,
                   max_batch_frames: int = 60000, on_done: Callable[[int], None] | None = None) -> np.ndarray:
        """(N, embed_dim) float32 embeddings of files or wav.scp entries, each as
        ``embed`` gives it: features in ``nj`` threads (decoding and fbank leave
        the GIL), and utterances of the same number of frames through the encoder
        in one batch (no padding, so a batch computes what each alone would, up
        to float rounding). Works through the list in chunks so that the
        features of a large corpus are never all held. ``on_done(n)`` is called
        as n more are finished; an unreadable file is a ModelError naming it
        (its entry in ``names`` when given)."""
        names = [str(a) for a in audio] if names is None else list(names)
        out = np.empty((len(audio), self.embed_dim), dtype=np.float32)
        chunk = max(64, 16 * nj)
        with ThreadPoolExecutor(max(1, nj)) as pool:
            for lo in range(0, len(audio), chunk):
                feats = list(pool.map(self.features, audio[lo:lo + chunk], names[lo:lo + chunk]))
                by_length: dict[int, list[int]] = defaultdict(list)
                for i, f in enumerate(feats):
                    if len(f) > self.max_frames:
                        out[lo + i] = self.embed_features(f)
                    else:
                        by_length[len(f)].append(i)
                for length, members in by_length.items():
                    per_batch = max(1, max_batch_frames // length)
                    for b in range(0, len(members), per_batch):
                        batch = members[b:b + per_batch]
                        x = torch.from_numpy(np.stack([feats[i] for i in batch])).to(self.device)
                        out[[lo + i for i in batch]] = self.encoder(x).float().cpu().numpy()
                if on_done is not None:
                    on_done(len(feats))
        return out

    def _embedding(self, item) -> np.ndarray:
        if isinstance(item, np.ndarray) and item.shape == (self.embed_dim,) and item.dtype == np.float32:
            return item
        return self.embed(item, SAMPLE_RATE if isinstance(item, (np.ndarray, torch.Tensor)) else None)

    def score(self, a, b) -> float:
        """The score of two utterances: the log-likelihood ratio of stage 6's
        calibration when the model has one (``calibrated``), else the cosine as
        stage 6 scores it (the stored mean subtracted first, when the model
        carries one). ``a`` and ``b`` are audio (a path, or a 16 kHz waveform)
        or embeddings from ``embed``."""
        return float(self.score_embeddings(self._embedding(a)[None], self._embedding(b)[None])[0])

    def cosine(self, a, b) -> float:
        """The cosine of two utterances as stage 6 scores them, calibrated or not."""
        return float(self.cosines(self._embedding(a)[None], self._embedding(b)[None])[0])

    def cosines(self, enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Rowwise cosines of (N, D) embeddings, with the model's mean subtracted."""
        from purl.scoring import cosine_score
        if self.missing_scoring_note:
            log.warning("%s", self.missing_scoring_note)
            self.missing_scoring_note = None
        return cosine_score(enroll, test, mean=self.mean)

    def score_embeddings(self, enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Rowwise scores of (N, D) embeddings, as ``score``: LLRs when calibrated, else cosines."""
        cosines = self.cosines(enroll, test)
        return self.llr(cosines) if self.calibrated else cosines

    def llr(self, cosine):
        """The log-likelihood ratio of a cosine (a float or an array) under stage 6's calibration."""
        if not self.calibrated:
            raise ModelError(f"{self.source}: no calibration stored for this model (its scores/threshold.json "
                             "predates steps/calibrate.py, or there is none: run stage 6's steps/calibrate.py)")
        llr = self.calibration["scale"] * np.asarray(cosine, dtype=np.float64) + self.calibration["offset"]
        return float(llr) if llr.ndim == 0 else llr

    def decision_threshold(self, p_target: float | None = None, *, at: str = "bayes", c_miss: float = 1.0,
                           c_fa: float = 1.0) -> float:
        """The threshold ``accept`` compares a score with, in the scores' own
        units (LLR when calibrated, else cosine): ``at="bayes"``, the Bayes
        threshold of the prior ``p_target`` (default: the prior the
        calibration was fitted at) and the costs; ``at="eer"``, stage 6's EER
        threshold. A model without a calibration has the EER threshold only."""
        if at not in DECIDE_AT:
            raise ModelError(f"at={at!r}: decide at one of {', '.join(DECIDE_AT)}")
        if at == "eer":
            if self.threshold is None:
                raise ModelError(f"{self.source}: no threshold stored for this model "
                                 "(run stage 6 to write exp/<model>/scores/threshold.json, or give one)")
            return self.llr(self.threshold) if self.calibrated else self.threshold
        if not self.calibrated:
            raise ModelError(f"{self.source}: no calibration stored for this model, so no decision at a prior "
                             "(run stage 6's steps/calibrate.py; accept(score, at='eer') decides at the EER "
                             "threshold)")
        return bayes_threshold(self.calibration["p_target"] if p_target is None else p_target, c_miss, c_fa)

    def accept(self, score: float, p_target: float | None = None, *, at: str | None = None,
               c_miss: float = 1.0, c_fa: float = 1.0) -> bool:
        """Whether ``score`` (from ``score``) is a target: for a calibrated model
        at the Bayes threshold of ``p_target`` (default: the calibration's
        prior) and the costs, or with ``at="eer"`` at stage 6's EER threshold;
        a model without a calibration decides at the EER threshold (as before
        calibration existed) and refuses a ``p_target``."""
        if at is None:
            at = "bayes" if self.calibrated or p_target is not None else "eer"
        return bool(score >= self.decision_threshold(p_target, at=at, c_miss=c_miss, c_fa=c_fa))


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu",
               threshold_file: str | os.PathLike | None = None) -> SpeakerModel:
    """The model of a checkpoint (``exp/<model>/models/final.pt``) or an exp dir,
    with the mean, EER threshold and calibration of
    ``exp/<model>/scores/threshold.json`` when stage 6 wrote one (or of
    ``threshold_file``), else of the checkpoint itself when it carries them
    (``models/final_scoring.pt``, written by stage 6's calibration: a copy of
    that one file scores as stage 6 did)."""
    ckpt = checkpoint_path(path)
    state = load_checkpoint(ckpt)
    if checkpoint_feature_type(state) != "kaldi":
        raise ModelError(f"{ckpt}: trained on {checkpoint_feature_type(state)} features (stage 1's --feature-type), but "
                         "purl computes Kaldi fbank from audio; embed its data with the recipe's stages instead "
                         "(steps/make_fbank.sh --feature-type, then steps/extract_embeddings.sh)")
    encoder, config = model_of(state, ckpt)
    if threshold_file is None:
        found = threshold_file_of(ckpt)
        threshold_file = found if found is not None and found.is_file() else None
    if threshold_file is not None:
        info = read_threshold(threshold_file)
    elif state.get("scoring") is not None:  # a self-contained copy (models/final_scoring.pt)
        info = scoring_info(state["scoring"], f"{ckpt} (its stored scoring)")
    else:
        info = {"threshold": None, "mean": None, "calibration": None}
    if threshold_file is not None and info["calibration"] is None:
        log.warning("%s has no calibration (stage 6 before steps/calibrate.py): scores are cosines and accept() "
                    "decides at the EER threshold; run steps/calibrate.py for log-likelihood ratios", threshold_file)
    model = SpeakerModel(encoder, config, mean=info["mean"], threshold=info["threshold"],
                         calibration=info["calibration"], device=device, source=str(ckpt))
    if threshold_file is None and state.get("scoring") is None:
        model.missing_scoring_note = (
            f"{ckpt} carries no mean, threshold or calibration of stage 6, and no scores/threshold.json is beside "
            "it: scores are plain cosines, not stage 6's. Copy exp/<model>/models/final_scoring.pt (stage 6 writes "
            "it) to score elsewhere as stage 6 did")
    return model


__all__ = ["AudioError", "ModelError", "SpeakerModel", "load_model"]
