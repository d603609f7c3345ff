#!/usr/bin/env python3
"""Usage: python bench/bench_speed_perturb.py [--utts 100] [--factors 0.9,1.1]   (after . ./path.sh; needs ffmpeg)

Speed perturbation in-process (purl.audio.read_speed_entry: FFmpeg's asetrate
and aresample through PyAV) against the ffmpeg pipe it replaced
(``ffmpeg -i f -af asetrate=<16000 f>,aresample=16000 -ac 1 -ar 16000 -f wav -``),
on the same 16 kHz 16-bit audio: real read speech (speechocean762, decoded to
wav first, --corpus), VoxCeleb2's format (AAC in m4a, generated) and stereo wav
(generated). Prints, per kind and factor, whether the lengths agree, the
largest and the RMS sample difference in LSB of 16 bits, the mean and the
largest difference of the fbank (log mel energies; the largest is in near-silent
bins), and both ways' time. The tolerance in tests/test_perturb.py comes
from here.
"""

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from purl.audio import read_speed_entry, write_aac
from purl.features import compute_fbank, fbank_options

ROOT = Path(__file__).resolve().parents[1]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=100, help="utterances of each kind")
    parser.add_argument("--factors", default="0.9,1.1")
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared" / "data" / "speechocean762-train"),
                        help="a folder of speech files soundfile reads (16 kHz)")
    return parser


def ffmpeg_speed(path: Path, factor: float) -> np.ndarray:
    filters = f"asetrate={16000 * factor:g},aresample=16000"
    out = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-af", filters,
                          "-ac", "1", "-ar", "16000", "-f", "wav", "-"], capture_output=True, check=True).stdout
    return sf.read(io.BytesIO(out), dtype="int16")[0].astype(np.float32)


def make_inputs(kind: str, n: int, corpus: Path, tmp: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    speech = sorted(corpus.rglob("*.opus"))[:n] if kind == "speech" else []
    for i in range(n):
        path = tmp / f"{kind}{i:04d}.{'m4a' if kind == 'm4a' else 'wav'}"
        if kind == "speech":
            x, rate = sf.read(speech[i], dtype="int16")
            assert rate == 16000, f"{speech[i]}: {rate} Hz"
        else:
            t = np.arange(int(rng.uniform(2, 6) * 16000)) / 16000
            channels = 2 if kind == "stereo wav" else 1
            x = 6000 * np.sin(2 * np.pi * 150 * t * (1 + t))[:, None] + rng.normal(0, 1500, (t.size, channels))
            x = x.clip(-32768, 32767).astype(np.int16).squeeze()
        if kind == "m4a":
            write_aac(path, x, 16000)
        else:
            sf.write(path, x, 16000, subtype="PCM_16")
        paths.append(path)
    return paths


def main() -> None:
    args = get_parser().parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("bench_speed_perturb.py: needs the ffmpeg program to compare with (apt-get install ffmpeg)")
    factors = [float(f) for f in args.factors.split(",")]
    opts = fbank_options()
    print(f"{args.utts} utterances of each kind, 16 kHz; differences in LSB of 16 bits\n")
    print("| audio | factor | same length | max sample diff | RMS diff | samples differing | fbank diff: mean "
          "| max | in-process s | ffmpeg s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("speech", "m4a", "stereo wav"):
            paths = make_inputs(kind, args.utts, Path(args.corpus), Path(tmp))
            for factor in factors:
                same, worst, sq, differing, total, ours_s, ffmpeg_s = True, 0.0, 0.0, 0, 0, 0.0, 0.0
                fbank_sum, fbank_count, fbank_worst = 0.0, 0, 0.0
                for path in paths:
                    start = time.perf_counter()
                    ours = read_speed_entry(str(path), factor, 16000)[0]
                    ours_s += time.perf_counter() - start
                    start = time.perf_counter()
                    reference = ffmpeg_speed(path, factor)
                    ffmpeg_s += time.perf_counter() - start
                    same &= len(ours) == len(reference)
                    n = min(len(ours), len(reference))
                    diff = np.abs(ours[:n] - reference[:n])
                    worst, sq = max(worst, float(diff.max())), sq + float((diff ** 2).sum())
                    differing, total = differing + int((diff > 0).sum()), total + n
                    fbank = np.abs(compute_fbank(ours[:n], opts) - compute_fbank(reference[:n], opts))
                    fbank_sum, fbank_count = fbank_sum + float(fbank.sum()), fbank_count + fbank.size
                    fbank_worst = max(fbank_worst, float(fbank.max()))
                print(f"| {kind} | {factor:g} | {'yes' if same else 'NO'} | {worst:g} | {np.sqrt(sq / total):.3f} "
                      f"| {differing / total:.1%} | {fbank_sum / fbank_count:.5f} | {fbank_worst:.3f} "
                      f"| {ours_s:.2f} | {ffmpeg_s:.2f} |")


if __name__ == "__main__":
    main()
