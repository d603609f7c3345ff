"""Waveform augmentation for training, as the field's recipes do it (Kaldi's
voxceleb/v2, WeSpeaker): with probability ``prob`` a chunk gets one of
reverberation with a room impulse response, additive noise (MUSAN noise,
0-15 dB SNR), music (5-15 dB) or babble (3-7 MUSAN speech utterances, each at
13-20 dB), the kind drawn uniformly among those configured.

Stage 1 stores fbank of the clean audio, so an augmented chunk cannot come from
there: ``WaveChunkDataset`` reads the utterance's audio (a crop of the samples
that makes ``chunk_frames`` frames), augments it and computes the fbank in the
loader worker with stage 1's options. The mean removed is the chunk's own (the
stored path removes the whole utterance's). Every draw comes from the item's
seed, as in ``ChunkDataset``, so an epoch is the same with any number of workers.

Noise and impulse responses come from Kaldi-style data dirs (``wav.scp``), made
by ``local/prepare_musan.py`` and ``local/prepare_rirs.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from purl.audio import AudioError, downmix, read_audio, unreadable
from purl.data.datadir import DataDir, DataDirError
from purl.data.dataset import TrainingSet, spec_augment
from purl.features import FRAME_LENGTH_S, FRAME_SHIFT_S, compute_fbank, fbank_options

KINDS = ("reverb", "noise", "music", "babble")


def read_segment(entry: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random span of ``num_samples`` of a wav.scp entry (16-bit scale), repeated
    to length when shorter. A file is read in part; a pipe is decoded whole."""
    if not entry.endswith("|"):
        try:
            total = sf.info(entry).frames
            start = int(rng.integers(0, max(total - num_samples, 0) + 1))
            samples = sf.read(entry, start=start, frames=num_samples, dtype="int16", always_2d=True)[0]
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise unreadable(entry, e) from e
        samples = downmix(samples.astype(np.float32))
    else:
        samples = read_audio(entry)[0]
        start = int(rng.integers(0, max(len(samples) - num_samples, 0) + 1))
        samples = samples[start:start + num_samples]
    if samples.size == 0:
        raise AudioError(f"{entry}: no samples")
    if samples.size < num_samples:
        samples = np.tile(samples, num_samples // samples.size + 1)[:num_samples]
    return samples


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) + 1e-5


def noise_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that 10 log10(P_speech / P_noise) = snr_db."""
    return noise * np.sqrt(power(speech) / (power(noise) * 10 ** (snr_db / 10)))


def reverberate(speech: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """speech convolved with the unit-energy ``rir``, cut to the speech's length."""
    rir = rir / np.sqrt(np.sum(np.square(rir, dtype=np.float64)) + 1e-12)
    from scipy.signal import fftconvolve  # here: scipy.signal takes a second to import

    return fftconvolve(speech, rir, mode="full")[:speech.size].astype(np.float32)


@dataclass
class Augmenter:
    """wav.scp entries of each source; an empty list leaves that kind out."""

    prob: float = 0.6
    noise: tuple[str, ...] = ()
    music: tuple[str, ...] = ()
    babble: tuple[str, ...] = ()
    rirs: tuple[str, ...] = ()
    noise_snr: tuple[float, float] = (0.0, 15.0)
    music_snr: tuple[float, float] = (5.0, 15.0)
    babble_snr: tuple[float, float] = (13.0, 20.0)
    babble_speakers: tuple[int, int] = (3, 7)

    @property
    def kinds(self) -> list[str]:
        sources = {"reverb": self.rirs, "noise": self.noise, "music": self.music, "babble": self.babble}
        return [k for k in KINDS if sources[k]]

    @classmethod
    def from_config(cls, cfg: dict) -> "Augmenter":
        """The ``augment`` section of a config: data dirs of each source."""
        def entries(key: str) -> tuple[str, ...]:
            if not cfg[key]:
                return ()
            data = DataDir(cfg[key])
            if not data.has("wav.scp"):
                raise DataDirError(f"augment.{key}={cfg[key]}: no wav.scp there "
                                   "(make it with local/prepare_musan.py or local/prepare_rirs.py)")
            return tuple(data.table("wav.scp").values())

        aug = cls(prob=cfg["prob"], noise=entries("noise"), music=entries("music"), babble=entries("babble"),
                  rirs=entries("rirs"), noise_snr=tuple(cfg["noise_snr"]), music_snr=tuple(cfg["music_snr"]),
                  babble_snr=tuple(cfg["babble_snr"]), babble_speakers=tuple(cfg["babble_speakers"]))
        if aug.prob > 0 and not aug.kinds:
            raise DataDirError("augment.prob > 0 but none of augment.noise, music, babble, rirs names a data dir")
        return aug

    def __call__(self, speech: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """(augmented samples, kind or 'none')."""
        if not self.kinds or rng.random() >= self.prob:
            return speech, "none"
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        if kind == "reverb":
            rir = read_audio(self.rirs[int(rng.integers(len(self.rirs)))])[0]
            return reverberate(speech, rir), kind
        if kind == "babble":
            lo, hi = self.babble_speakers
            out = speech.astype(np.float64)
            for _ in range(int(rng.integers(lo, hi + 1))):
                talker = read_segment(self.babble[int(rng.integers(len(self.babble)))], speech.size, rng)
                out += noise_at_snr(speech, talker, rng.uniform(*self.babble_snr))
            return out.astype(np.float32), kind
        source, snr = (self.noise, self.noise_snr) if kind == "noise" else (self.music, self.music_snr)
        noise = read_segment(source[int(rng.integers(len(source)))], speech.size, rng)
        return (speech + noise_at_snr(speech, noise, rng.uniform(*snr))).astype(np.float32), kind


class WaveChunkDataset(torch.utils.data.Dataset):
    """ChunkDataset's items from audio: (chunk (chunk_frames, bins) float tensor, utterance index)."""

    def __init__(self, data: TrainingSet, wav_scp: list[str], augmenter: Augmenter, chunk_frames: int = 300,
                 spec_augment: bool = False, freq_mask: int = 8, time_mask: int = 20, sample_rate: int = 16000):
        if len(wav_scp) != len(data):
            raise ValueError(f"{len(wav_scp)} wav.scp entries for {len(data)} utterances")
        self.data, self.wav_scp, self.augmenter = data, wav_scp, augmenter
        self.chunk_frames = chunk_frames
        self.spec_augment, self.freq_mask, self.time_mask = spec_augment, freq_mask, time_mask
        self.opts = fbank_options(sample_rate, 80)
        shift, window = int(sample_rate * FRAME_SHIFT_S), int(sample_rate * FRAME_LENGTH_S)
        self.num_samples = (chunk_frames - 1) * shift + window

    @classmethod
    def from_data_dir(cls, data: TrainingSet, path: str | os.PathLike, augmenter: Augmenter, **kwargs) -> "WaveChunkDataset":
        data_dir = DataDir(path)
        if not data_dir.has("wav.scp"):
            raise DataDirError(f"{path}/wav.scp: missing; augmentation reads the audio")
        table = data_dir.table("wav.scp")
        missing = next((u for u in data.utts if u not in table), None)
        if missing is not None:
            raise DataDirError(f"{path}/wav.scp: no audio for '{missing}' (run utils/fix_data_dir.py {path})")
        return cls(data, [table[u] for u in data.utts], augmenter, **kwargs)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        utt, seed = item
        rng = np.random.default_rng(seed)
        try:
            samples = read_segment(self.wav_scp[utt], self.num_samples, rng)
        except AudioError as e:
            raise AudioError(f"'{self.data.utts[utt]}': {e}") from e
        samples, _ = self.augmenter(samples, rng)
        feats = compute_fbank(samples, self.opts)
        feats = feats - feats.mean(axis=0, keepdims=True)
        if self.spec_augment:
            feats = spec_augment(feats, rng, self.freq_mask, self.time_mask)
        return torch.from_numpy(np.ascontiguousarray(feats)), utt
