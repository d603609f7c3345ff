"""Training data: fixed-length chunks of stored fbank, in P speakers x K utterances batches.

Everything random here is drawn from generators seeded by (seed, epoch, step),
never from global state, so an epoch is the same whatever the number of loader
workers, and a run resumed at step s sees exactly the batches it would have seen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from purl.config import ConfigError
from purl.data.datadir import DataDir, DataDirError
from purl.kaldi_io import load_matrix


@dataclass
class TrainingSet:
    """The utterances of a data dir with features, and their speaker labels."""

    utts: list[str]
    feats: list[str]            # feats.scp entries (ark:offset)
    num_frames: np.ndarray      # (N,)
    labels: np.ndarray          # (N,) speaker index into `speakers`
    speakers: list[str]

    @classmethod
    def from_data_dir(cls, path: str | os.PathLike) -> "TrainingSet":
        data = DataDir(path)
        for name in ("feats.scp", "utt2num_frames"):
            if not data.has(name):
                raise DataDirError(f"{data.path}/{name}: missing (run stage 1, steps/make_fbank.sh, first)")
        feats, frames = data.table("feats.scp"), data.table("utt2num_frames")
        utts = data.utts
        missing = next((u for u in utts if u not in feats), None)
        if missing is not None:
            raise DataDirError(f"{data.path}/feats.scp: no features for '{missing}' (run utils/fix_data_dir.py {data.path})")
        if not utts:
            raise DataDirError(f"{data.path}/utt2spk: no utterances (check stage 0's output)")
        speakers = data.speakers
        index = {s: i for i, s in enumerate(speakers)}
        return cls(
            utts=utts,
            feats=[feats[u] for u in utts],
            num_frames=np.array([int(frames[u]) for u in utts], dtype=np.int64),
            labels=np.array([index[data.utt2spk[u]] for u in utts], dtype=np.int64),
            speakers=speakers,
        )

    def __len__(self) -> int:
        return len(self.utts)


def load_features(entry: str, utt: str = "") -> np.ndarray:
    """(frames, bins) float32 with the utterance mean removed from every bin.

    Raises DataDirError for a command entry (kaldiio would run it: feats.scp
    holds ark:offset entries only) and for non-finite values, naming ``utt``.
    """
    if entry.rstrip().endswith("|"):
        raise DataDirError(f"feats.scp entry of '{utt}' is a command ({entry}); feats.scp takes ark:offset entries "
                           "only (compute the features with steps/make_fbank.sh)")
    feats = load_matrix(entry).astype(np.float32, copy=False)
    if not np.isfinite(feats).all():
        raise DataDirError(f"features of '{utt}' ({entry}) hold NaN or inf; recompute them (steps/make_fbank.sh) "
                           "or remove the utterance (utils/subset_data_dir.py)")
    return feats - feats.mean(axis=0, keepdims=True)


def feature_dim(entry: str, utt: str = "") -> int:
    """The number of columns of one stored feature matrix."""
    return load_features(entry, utt).shape[1]


def random_chunk(feats: np.ndarray, chunk_frames: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of chunk_frames; a shorter utterance is repeated to length."""
    n = len(feats)
    if n < chunk_frames:
        feats = np.tile(feats, (chunk_frames // n + 1, 1))
        n = len(feats)
    start = int(rng.integers(0, n - chunk_frames + 1))
    return feats[start:start + chunk_frames]


def spec_augment(feats: np.ndarray, rng: np.random.Generator, freq_mask: int, time_mask: int) -> np.ndarray:
    """One frequency band and one time span set to zero (the mean after normalisation)."""
    feats = feats.copy()
    frames, bins = feats.shape
    width = int(rng.integers(0, freq_mask + 1))
    start = int(rng.integers(0, bins - width + 1))
    feats[:, start:start + width] = 0.0
    span = int(rng.integers(0, min(time_mask, frames) + 1))
    start = int(rng.integers(0, frames - span + 1))
    feats[start:start + span] = 0.0
    return feats


class ChunkDataset(torch.utils.data.Dataset):
    """Items are (utterance index, seed) pairs from SpeakerBatchSampler; an item
    is (chunk (chunk_frames, bins) float tensor, utterance index)."""

    def __init__(self, data: TrainingSet, chunk_frames: int = 300, spec_augment: bool = False,
                 freq_mask: int = 8, time_mask: int = 20):
        self.data = data
        self.chunk_frames = chunk_frames
        self.augment = spec_augment
        self.freq_mask, self.time_mask = freq_mask, time_mask

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        utt, seed = item
        rng = np.random.default_rng(seed)
        chunk = random_chunk(load_features(self.data.feats[utt], self.data.utts[utt]), self.chunk_frames, rng)
        if self.augment:
            chunk = spec_augment(chunk, rng, self.freq_mask, self.time_mask)
        return torch.from_numpy(np.ascontiguousarray(chunk)), utt


def collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    chunks, utts = zip(*items)
    return torch.stack(chunks), torch.tensor(utts, dtype=torch.long)


class SpeakerBatchSampler(torch.utils.data.Sampler):
    """Batches of P speakers x K utterances, split over the training processes.

    An epoch has ceil(samples_per_epoch / (P * K)) steps, the original work's
    (Lightning's) count: 1,667 for 1,000,000 samples of 600. Each step draws P
    distinct speakers uniformly and K distinct utterances of each (with
    replacement for a speaker with fewer than K). Process r of W takes speakers
    floor(r*P/W)..floor((r+1)*P/W) of every batch: shares differ by at most one
    speaker when W does not divide P (``rows_of(r)`` is the share of process r).
    ``set_epoch(e, start_step=s)`` makes the next iteration the steps s.. of
    epoch e, which is how training resumes mid-epoch.
    """

    def __init__(self, labels: np.ndarray, speakers_per_batch: int, utts_per_speaker: int,
                 samples_per_epoch: int, seed: int, rank: int = 0, world_size: int = 1):
        if speakers_per_batch < world_size:
            raise ConfigError(
                f"data.speakers_per_batch={speakers_per_batch} is fewer than the {world_size} training processes: "
                f"each process needs at least one speaker (use fewer processes or a larger batch)"
            )
        # One stable sort, not a scan of all labels per speaker (S x N at VoxCeleb size).
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        self.by_speaker = np.split(order, bounds) if len(order) else []
        if speakers_per_batch > len(self.by_speaker):
            raise ConfigError(
                f"data.speakers_per_batch={speakers_per_batch}: the training set has only {len(self.by_speaker)} "
                f"speakers (a batch draws distinct speakers); set it to {len(self.by_speaker)} or fewer"
            )
        self.P, self.K = speakers_per_batch, utts_per_speaker
        if samples_per_epoch < 1:
            raise ConfigError(f"data.samples_per_epoch={samples_per_epoch} must be positive")
        self.steps_per_epoch = -(-samples_per_epoch // (self.P * self.K))
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step

    def draw_speakers(self, rng: np.random.Generator) -> np.ndarray:
        """The P distinct speakers of a batch (purl.data.chns draws them otherwise)."""
        return rng.choice(len(self.by_speaker), self.P, replace=False)

    def global_batch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(P*K,) utterance indices grouped by speaker, and a seed for each item."""
        speakers = self.draw_speakers(rng)
        utts = np.empty((self.P, self.K), dtype=np.int64)
        for row, s in enumerate(speakers):
            pool = self.by_speaker[s]
            utts[row] = pool[rng.choice(len(pool), self.K, replace=len(pool) < self.K)]
        seeds = rng.integers(0, 2**63 - 1, size=(self.P, self.K))
        return utts, seeds

    def rows_of(self, rank: int) -> slice:
        """The speakers (rows of a global batch) that process ``rank`` embeds."""
        return slice(rank * self.P // self.world_size, (rank + 1) * self.P // self.world_size)

    def utts_per_rank(self) -> list[int]:
        """How many utterances each process embeds per step, in rank order."""
        return [(self.rows_of(r).stop - self.rows_of(r).start) * self.K for r in range(self.world_size)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        rows = self.rows_of(self.rank)
        for step in range(self.steps_per_epoch):
            utts, seeds = self.global_batch(rng)  # drawn for skipped steps too, to keep the stream
            if step >= self.start_step:
                yield list(zip(utts[rows].ravel().tolist(), seeds[rows].ravel().tolist()))
