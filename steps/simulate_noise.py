#!/usr/bin/env python3
"""Usage: simulate_noise.py [--seed S] <rate> <src-data-dir> <dst-data-dir>

Stage 2: copies <src-data-dir> to <dst-data-dir> with exactly round(rate * N)
utterances, drawn uniformly with --seed, filed under a uniformly drawn other
speaker (utt2spk, spk2utt); the true speakers go to utt2truespk so that stage 4
can measure how well it finds them. The features are shared, not copied.
noise.settings records rate, seed and the source's files: a rerun with the
same ones is skipped, with others redone.

e.g.: python steps/simulate_noise.py --seed 0 0.2 data/train data/train_noisy0.2
"""

import argparse
import logging

from purl.entry import run_main
from purl.errors import UsageError
from purl.stages.noise import run_noise


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rate", type=float)
    parser.add_argument("src_dir")
    parser.add_argument("dst_dir")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main() -> int:
    args = get_parser().parse_args()
    if not 0 < args.rate < 1:
        # Rate 0 would make a copy whose truth equals its labels: nothing for stage 4 to detect (AUC nan).
        raise UsageError(f"rate {args.rate} must be in (0, 1); with no noise, train on {args.src_dir} itself")
    summary = run_noise(args.src_dir, args.dst_dir, args.rate, args.seed)
    if summary is not None:
        logging.info("%s: relabelled %d of %d utterances (rate %s, seed %d)", args.dst_dir, summary["relabelled"],
                     summary["utterances"], args.rate, args.seed)
    return 0


if __name__ == "__main__":
    run_main(main)
