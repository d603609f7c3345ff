#!/usr/bin/env python3
"""Usage: python -m bench.bench_loader [--utts 400] [--mean-seconds 8]   (after . ./path.sh)

Training data loading speed: how many training chunks (default 300 frames) one
loader worker produces per second from Kaldi-compressed fbank, i.e. what
ChunkDataset does for every item (read the ark entry, decompress, mean-normalise,
cut a random chunk, optionally SpecAugment) plus collation into batches.

The features are random 80-dim fbank-like matrices written exactly as stage 1
writes them (purl.features.ArkWriter, kSpeechFeature compression), with utterance lengths drawn
around VoxCeleb2's (mean 8 s, 4 to 20 s), read back through a real data dir,
sampler and torch DataLoader. One worker runs on one core; compare chunks/s per
worker with a model's training throughput (bench_models): a loader worker must
outrun what one GPU consumes divided by the workers you give it.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from purl.allocator import keep_freed_memory
from purl.data.datadir import utt2spk_to_spk2utt, write_kv
from purl.data.dataset import ChunkDataset, SpeakerBatchSampler, TrainingSet, collate
from purl.features import ArkWriter


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=400, help="utterances written (5 per speaker)")
    parser.add_argument("--mean-seconds", type=float, default=8.0, help="mean utterance length")
    parser.add_argument("--chunk-frames", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64, help="chunks per batch (speakers x 2)")
    parser.add_argument("--batches", type=int, default=30, help="timed batches per run")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs")
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


def chunks_per_second(data: TrainingSet, args, spec_augment: bool) -> float:
    """Median over runs of chunks/s through a DataLoader with one worker process."""
    dataset = ChunkDataset(data, chunk_frames=args.chunk_frames, spec_augment=spec_augment)
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
            rate = chunks_per_second(data, args, augment)
            print(f"| compressed ark -> chunk{' + SpecAugment' if augment else ''} | {rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
