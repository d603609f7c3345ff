#!/usr/bin/env python3
"""Usage: python -m bench.bench_loader [--utts 400] [--mean-seconds 8]   (after . ./path.sh)

Training data loading speed: how many training chunks (default 300 frames) one
loader worker produces per second from Kaldi-compressed fbank, i.e. what
ChunkDataset does for every item (read the ark entry, decompress, mean-normalise,
cut a random chunk, optionally SpecAugment) plus collation into batches.

The features are random 80-dim fbank-like matrices written exactly as stage 1
writes them (purl.kaldi_io.ArkWriter, kSpeechFeature compression), with utterance lengths drawn
around VoxCeleb2's (mean 8 s, 4 to 20 s), read back through a real data dir,
sampler and torch DataLoader. One worker runs on one core; compare chunks/s per
worker with a model's training throughput (bench_models): a loader worker must
outrun what one GPU consumes divided by the workers you give it.

With --audio it also times the augmentation path (purl/data/augment.py): the
same utterances as 16-bit wav files, a crop read and turned into fbank in the
worker, without augmentation and with noise or reverberation (generated noise
files and impulse responses of 0.3 s) on every chunk or on 60% of them.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from purl.allocator import keep_freed_memory
from purl.data.augment import Augmenter, WaveChunkDataset
from purl.data.datadir import utt2spk_to_spk2utt, write_kv
from purl.data.dataset import ChunkDataset, SpeakerBatchSampler, TrainingSet, collate
from purl.kaldi_io import ArkWriter


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=400, help="utterances written (5 per speaker)")
    parser.add_argument("--mean-seconds", type=float, default=8.0, help="mean utterance length")
    parser.add_argument("--chunk-frames", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64, help="chunks per batch (speakers x 2)")
    parser.add_argument("--batches", type=int, default=30, help="timed batches per run")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    parser.add_argument("--audio", action="store_true", help="also time the audio + augmentation path")
    return parser


def write_features(data_dir: Path, utts: int, mean_seconds: float) -> float:
    """A data dir with feats.scp and utt2num_frames; returns the hours written."""
    rng = np.random.default_rng(0)
    data_dir.mkdir(parents=True)
    seconds = np.clip(rng.gamma(4.0, mean_seconds / 4.0, size=utts), 4.0, 20.0)
    utt2spk = {f"spk{i // 5:04d}-utt{i:05d}": f"spk{i // 5:04d}" for i in range(utts)}
    utt2num_frames = {utt: int(s * 100) - 2 for utt, s in zip(utt2spk, seconds)}
    with ArkWriter(data_dir / "feats.ark", data_dir / "feats.scp", ark_name=data_dir / "feats.ark") as writer:
        for utt, frames in utt2num_frames.items():
            # fbank-like: log energies around 10 with a spectral slope and frame-to-frame variation
            feats = 12.0 - np.linspace(0, 6, 80) + rng.normal(0, 2.0, (frames, 80))
            writer(utt, feats.astype(np.float32))
    write_kv(data_dir / "utt2spk", utt2spk)
    write_kv(data_dir / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_kv(data_dir / "utt2num_frames", utt2num_frames)
    return float(seconds.sum()) / 3600


def write_audio(data_dir: Path, utt2num_frames: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
    """Noise-like 16-bit wav files of each utterance's length, 20 noise files and
    20 impulse responses; returns (wav.scp entries, noise files, rir files)."""
    rng = np.random.default_rng(1)
    (data_dir / "wav").mkdir()

    def write(name: str, x: np.ndarray) -> str:
        path = data_dir / "wav" / f"{name}.wav"
        sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
        return str(path)

    entries = [write(utt, 0.1 * rng.standard_normal(frames * 160 + 240)) for utt, frames in utt2num_frames.items()]
    noise = [write(f"noise{i}", 0.1 * rng.standard_normal(4800)) for i in range(20)]
    decay = np.exp(-np.arange(4800) / 800)
    rirs = [write(f"rir{i}", 0.5 * decay * rng.standard_normal(4800)) for i in range(20)]
    return entries, noise, rirs


def chunks_per_second(dataset: torch.utils.data.Dataset, data: TrainingSet, args) -> float:
    """Median over runs of chunks/s through a DataLoader with one worker process."""
    rates = []
    for repeat in range(args.repeats):
        sampler = SpeakerBatchSampler(data.labels, args.batch_size // 2, 2,
                                      samples_per_epoch=args.batch_size * (args.batches + 2), seed=repeat)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                             num_workers=1, prefetch_factor=2,
                                             worker_init_fn=lambda _: os.sched_setaffinity(0, {0}))
        it = iter(loader)
        next(it), next(it)  # worker start-up, not loading speed
        start = time.perf_counter()
        n = sum(len(utts) for _, utts in it)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    args = get_parser().parse_args()
    keep_freed_memory()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        hours = write_features(Path(tmp) / "train", args.utts, args.mean_seconds)
        data = TrainingSet.from_data_dir(Path(tmp) / "train")
        print(f"{args.utts} utterances ({hours:.2f} h, mean {hours * 3600 / args.utts:.1f} s), "
              f"chunks of {args.chunk_frames} frames, batches of {args.batch_size}, one worker process on one core\n")
        print("| loader | chunks/s per worker |")
        print("|---|---:|")
        for augment in (False, True):
            rate = chunks_per_second(ChunkDataset(data, chunk_frames=args.chunk_frames, spec_augment=augment), data, args)
            print(f"| compressed ark -> chunk{' + SpecAugment' if augment else ''} | {rate:.0f} |", flush=True)
        if args.audio:
            frames = dict(zip(data.utts, data.num_frames.tolist()))
            entries, noise, rirs = write_audio(Path(tmp) / "train", frames)
            for prob, label in ((0.0, "no augmentation"), (0.6, "noise or reverb on 60%"),
                                (1.0, "noise or reverb on all")):
                aug = Augmenter(prob=prob, noise=tuple(noise), rirs=tuple(rirs))
                dataset = WaveChunkDataset(data, entries, aug, chunk_frames=args.chunk_frames)
                print(f"| wav -> fbank chunk, {label} | {chunks_per_second(dataset, data, args):.0f} |", flush=True)


if __name__ == "__main__":
    main()
