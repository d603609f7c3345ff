#!/usr/bin/env python3
"""Usage: python bench/bench_fbank.py [--utts 200] [--seconds 4]   (after . ./path.sh)

Stage 1 speed on one core: real-time factor of bare kaldi-native-fbank calls on
audio already in memory, and of the whole job (read wav, fbank, Kaldi-compress,
write ark + scp), on the same generated 16 kHz audio. Prints a markdown table.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from purl.allocator import keep_freed_memory
from purl.features import compute_fbank, fbank_options, make_fbank_job


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each utterance")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    return parser


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    args = get_parser().parse_args()
    keep_freed_memory()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rng = np.random.default_rng(0)
    n = int(args.seconds * 16000)
    with tempfile.TemporaryDirectory() as tmp:
        wav_scp, audio = {}, []
        for i in range(args.utts):
            x = (rng.standard_normal(n) * 2000).clip(-32768, 32767).astype(np.int16)
            path = Path(tmp) / f"u{i:04d}.wav"
            sf.write(path, x, 16000, subtype="PCM_16")
            wav_scp[f"spk-u{i:04d}"] = str(path)
            audio.append(x.astype(np.float32))
        opts = fbank_options()
        total = args.utts * args.seconds
        bare = best_of(args.repeats, lambda: [compute_fbank(x, opts) for x in audio])
        whole = best_of(args.repeats, lambda: make_fbank_job(wav_scp, Path(tmp) / "out.ark"))
    print(f"{args.utts} utterances x {args.seconds:g} s, one core\n")
    print("| step | seconds | x real time |")
    print("|---|---:|---:|")
    print(f"| bare kaldi-native-fbank | {bare:.2f} | {total / bare:.0f} |")
    print(f"| whole job (read, fbank, compress, write) | {whole:.2f} | {total / whole:.0f} |")
    print(f"\nwhole job / bare fbank: {whole / bare:.2f}x")


if __name__ == "__main__":
    main()
