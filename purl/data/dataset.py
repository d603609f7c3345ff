"""Training data: fixed-length chunks of stored fbank, in P speakers x K utterances batches.

An input is normalised over the whole utterance before it is cut (``normalise
= "utterance"``, the default) or over the chunk itself (``"crop"``, the
original work's: its front end runs on each 3 s crop). Normalising is the
feature type's top_db floor (speechbrain features: purl.features.top_db_floor),
then the mean of every bin removed.

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
from purl.features import TOP_DB, feature_type_of, top_db_floor
from purl.kaldi_io import load_matrix

NORMALISE = ("utterance", "crop")  # data.normalise, stage 4's --normalise: what an input is normalised over


@dataclass
class TrainingSet:
    """The utterances of a data dir with features, and their speaker labels."""

    utts: list[str]
    feats: list[str]            # feats.scp entries (ark:offset)
    num_frames: np.ndarray      # (N,)
    labels: np.ndarray          # (N,) speaker index into `speakers`
    speakers: list[str]
    feature_type: str = "kaldi"  # what stage 1 recorded (purl.features.feature_type_of)
    # (N,) bool: the label is not the speaker of utt2truespk (simulated noise); None without that file
    mislabelled: np.ndarray | None = None

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
        truth = data.table("utt2truespk") if data.has("utt2truespk") else None
        return cls(
            utts=utts,
            feats=[feats[u] for u in utts],
            num_frames=np.array([int(frames[u]) for u in utts], dtype=np.int64),
            labels=np.array([index[data.utt2spk[u]] for u in utts], dtype=np.int64),
            speakers=speakers,
            feature_type=feature_type_of(data.path),
            mislabelled=None if truth is None else np.array([truth[u] != data.utt2spk[u] for u in utts]),
        )

    def __len__(self) -> int:
        return len(self.utts)


def load_features(entry: str, utt: str = "", top_db: float | None = None) -> np.ndarray:
    """(frames, bins) float32 normalised over the whole utterance (``normalise``)."""
    return normalise(read_features(entry, utt), top_db)


def normalise(feats: np.ndarray, top_db: float | None = None) -> np.ndarray:
    """The top_db floor over all of ``feats`` (None: none; purl.features.TOP_DB
    gives each feature type's), then the mean of every bin removed."""
    feats = top_db_floor(feats, top_db)
    return feats - feats.mean(axis=0, keepdims=True)


def read_features(entry: str, utt: str = "") -> np.ndarray:
    """(frames, bins) float32 as stored.

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
    return feats


def feature_dim(entry: str, utt: str = "") -> int:
    """The number of columns of one stored feature matrix."""
    return read_features(entry, utt).shape[1]


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


def check_normalise(value: str, where: str = "data.normalise") -> str:
    if value not in NORMALISE:
        raise ConfigError(f"{where}={value!r}: use 'utterance' (normalised before the chunk is cut) or "
                          "'crop' (each chunk on its own, the original work's)")
    return value


class ChunkDataset(torch.utils.data.Dataset):
    """Items are (utterance index, seed) pairs from SpeakerBatchSampler; an item
    is (chunk (chunk_frames, bins) float tensor, utterance index). ``normalise``:
    over the utterance or over each chunk (the module's docstring)."""

    def __init__(self, data: TrainingSet, chunk_frames: int = 300, spec_augment: bool = False,
                 freq_mask: int = 8, time_mask: int = 20, normalise: str = "utterance"):
        self.data = data
        self.chunk_frames = chunk_frames
        self.augment = spec_augment
        self.freq_mask, self.time_mask = freq_mask, time_mask
        self.normalise_over = check_normalise(normalise)
        self.top_db = TOP_DB[data.feature_type]

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        utt, seed = item
        rng = np.random.default_rng(seed)
        entry, name = self.data.feats[utt], self.data.utts[utt]
        if self.normalise_over == "utterance":
            chunk = random_chunk(load_features(entry, name, self.top_db), self.chunk_frames, rng)
        else:
            chunk = normalise(random_chunk(read_features(entry, name), self.chunk_frames, rng), self.top_db)
        if self.augment:
            chunk = spec_augment(chunk, rng, self.freq_mask, self.time_mask)
        return torch.from_numpy(np.ascontiguousarray(chunk)), utt


def collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    chunks, utts = zip(*items)
    return torch.stack(chunks), torch.tensor(utts, dtype=torch.long)


SAMPLERS = ("distinct", "with_replacement")  # data.sampler


class SpeakerBatchSampler(torch.utils.data.Sampler):
    """Batches of P speakers x K utterances, split over the training processes.

    An epoch has ceil(samples_per_epoch / (P * K)) steps, the original work's
    (Lightning's) count: 1,667 for 1,000,000 samples of 600. Each step draws P
    distinct speakers uniformly and K distinct utterances of each (with
    replacement for a speaker with fewer than K): the original's
    UniqueBatchSampler (src/data/samplers.py), which its pretraining uses.

    ``sampler="with_replacement"`` is the loader its ECAPA PURL update runs
    (``use_unique_batch_sampler`` is commented out in configs/ncu_30ep.yaml, so
    src/data/datamodules.py's default DataLoader over VoxCelebNCUDataset): each
    of a batch's P rows draws its speaker uniformly on its own, so a speaker
    can fill several rows (same-speaker samples of different rows are then
    positives of one another), and an epoch is samples_per_epoch // K rows, its
    last batch the remainder (500,000 pairs: 1,666 batches of 300 and one of
    200). The rows keep their order in the batch: row r is items r*K..r*K+K-1. Process r of W takes speakers
    floor(r*P/W)..floor((r+1)*P/W) of every batch: shares differ by at most one
    speaker when W does not divide P (``rows_of(r)`` is the share of process r).
    ``set_epoch(e, start_step=s)`` makes the next iteration the steps s.. of
    epoch e, which is how training resumes mid-epoch. ``set_selection`` restricts
    the draws to some utterances (OR-Gate, purl.orgate).
    """

    def __init__(self, labels: np.ndarray, speakers_per_batch: int, utts_per_speaker: int,
                 samples_per_epoch: int, seed: int, rank: int = 0, world_size: int = 1, sampler: str = "distinct"):
        if sampler not in SAMPLERS:
            raise ConfigError(f"data.sampler={sampler!r}: use 'distinct' (P distinct speakers a batch) or "
                              "'with_replacement' (each row's speaker drawn on its own, the original's PURL loader)")
        self.replacement = sampler == "with_replacement"
        if speakers_per_batch < world_size:
            raise ConfigError(
                f"data.speakers_per_batch={speakers_per_batch} is fewer than the {world_size} training processes: "
                f"each process needs at least one speaker (use fewer processes or a larger batch)"
            )
        # One stable sort, not a scan of all labels per speaker (S x N at VoxCeleb size).
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        self.by_speaker = np.split(order, bounds) if len(order) else []
        if speakers_per_batch > len(self.by_speaker) and not self.replacement:
            raise ConfigError(
                f"data.speakers_per_batch={speakers_per_batch}: the training set has only {len(self.by_speaker)} "
                f"speakers (a batch draws distinct speakers); set it to {len(self.by_speaker)} or fewer"
            )
        self.P, self.K = speakers_per_batch, utts_per_speaker
        if samples_per_epoch < 1:
            raise ConfigError(f"data.samples_per_epoch={samples_per_epoch} must be positive")
        self.steps_per_epoch = -(-samples_per_epoch // (self.P * self.K))
        # with_replacement: rows of the last batch (the rest of samples_per_epoch // K)
        self.last_rows = samples_per_epoch // self.K - (self.steps_per_epoch - 1) * self.P if self.replacement \
            else self.P
        if self.last_rows < world_size:
            raise ConfigError(f"data.samples_per_epoch={samples_per_epoch}: the last batch would have "
                              f"{self.last_rows} rows of {self.K}, fewer than the {world_size} training processes")
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.start_step = 0, 0
        # what a batch draws from: speakers (indices of by_speaker) and each speaker's utterances
        self.drawable, self.pools = np.arange(len(self.by_speaker)), self.by_speaker

    def set_selection(self, selected: np.ndarray) -> None:
        """Draws only the utterances where ``selected`` ((N,) bool) is true: each
        speaker from its selected ones (with replacement when fewer than K, as
        any speaker), and only the speakers with at least 2 of them. One
        utterance would make a speaker's positives two crops of one recording,
        which say nothing about the label, and a uniform speaker draw would
        replay it as often as a whole speaker's."""
        selected = np.asarray(selected, dtype=bool)
        pools = [utts[selected[utts]] for utts in self.by_speaker]
        drawable = np.array([s for s, pool in enumerate(pools) if len(pool) >= 2], dtype=np.int64)
        needed = 1 if self.replacement else self.P  # a batch draws P distinct speakers
        if len(drawable) < needed:
            raise ConfigError(
                f"only {len(drawable)} speakers have 2 or more selected utterances ({int(selected.sum())} of "
                f"{len(selected)} selected); a batch needs {needed} (data.speakers_per_batch={self.P}, "
                f"data.sampler={'with_replacement' if self.replacement else 'distinct'}): raise orgate.top_k, "
                "or lower data.speakers_per_batch")
        self.drawable, self.pools = drawable, pools

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step

    def rows_at(self, step: int) -> int:
        """The rows (speakers) of the batch at ``step``: P, but the last batch's under with_replacement."""
        return self.last_rows if step == self.steps_per_epoch - 1 else self.P

    def draw_speakers(self, rng: np.random.Generator, rows: int | None = None) -> np.ndarray:
        """The P distinct speakers of a batch (purl.data.chns draws them otherwise),
        or with_replacement ``rows`` speakers each drawn uniformly."""
        if self.replacement:
            return self.drawable[rng.integers(0, len(self.drawable), size=self.P if rows is None else rows)]
        return self.drawable[rng.choice(len(self.drawable), self.P, replace=False)]

    def global_batch(self, rng: np.random.Generator, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, K) utterance indices, a row per speaker draw, and a seed for each item."""
        speakers = self.draw_speakers(rng, rows) if self.replacement else self.draw_speakers(rng)
        utts = np.empty((len(speakers), self.K), dtype=np.int64)
        for row, s in enumerate(speakers):
            pool = self.pools[s]
            utts[row] = pool[rng.choice(len(pool), self.K, replace=len(pool) < self.K)]
        seeds = rng.integers(0, 2**63 - 1, size=(len(speakers), self.K))
        return utts, seeds

    def rows_of(self, rank: int, rows: int | None = None) -> slice:
        """The speakers (rows of a global batch of ``rows``, default P) that process ``rank`` embeds."""
        rows = self.P if rows is None else rows
        return slice(rank * rows // self.world_size, (rank + 1) * rows // self.world_size)

    def utts_per_rank(self, step: int | None = None) -> list[int]:
        """How many utterances each process embeds per step (at ``step``: the
        last batch under with_replacement has fewer), in rank order."""
        rows = self.P if step is None else self.rows_at(step)
        return [(self.rows_of(r, rows).stop - self.rows_of(r, rows).start) * self.K for r in range(self.world_size)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for step in range(self.steps_per_epoch):
            rows = self.rows_at(step)
            # drawn for skipped steps too, to keep the stream
            utts, seeds = self.global_batch(rng, rows) if self.replacement else self.global_batch(rng)
            if step >= self.start_step:
                mine = self.rows_of(self.rank, rows)
                yield list(zip(utts[mine].ravel().tolist(), seeds[mine].ravel().tolist()))
