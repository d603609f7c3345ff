#!/usr/bin/env python3
"""Usage: perturb_speed.py [--factors 0.9,1.1] <src-data-dir> <dst-data-dir>

Speed perturbation, after stage 0 and before stage 1: <dst-data-dir> holds the
utterances of <src-data-dir> and, for each factor f, a copy of each played f
times as fast (a utils/speed_audio.py command in wav.scp, which purl reads
in-process) under the new speaker sp<f>-<speaker>, as WeSpeaker and Kaldi do.
Train on <dst-data-dir> after its stage 1. It only writes tables, so a rerun
always rewrites them (from the current <src-data-dir> and --factors); a table
that comes out the same keeps its file and time.

e.g.: steps/perturb_speed.py data/vox2_dev data/vox2_dev_sp
"""

import argparse
import sys
from pathlib import Path

from purl.data.perturb import perturb_speed
from purl.entry import run_main
from purl.errors import UsageError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--factors", default="0.9,1.1", help="comma-separated speed factors")
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args()
    name = Path(sys.argv[0]).name
    try:
        factors = [float(f) for f in args.factors.split(",") if f]
    except ValueError as e:
        raise UsageError(f"--factors {args.factors}: {e}") from e
    n = perturb_speed(args.src, args.dst, factors, args.sample_rate)
    print(f"{name}: wrote {args.dst} ({n} utterances, factors {args.factors})")
    return 0


if __name__ == "__main__":
    run_main(main)
