#!/usr/bin/env python3
"""Usage: epoch_results.py [--scoring cosine] <exp-dir>

The table over every scored epoch of one model (steps/score_epochs.sh): a row
per epoch and trial list from <exp-dir>/scores_epochs/epoch_<N>/results.json,
written to <exp-dir>/scores_epochs/results.md and results.csv, with
eer.png (EER per epoch); prints the markdown.

e.g.: python steps/epoch_results.py exp/ecapa_purl_noisy0_seed0
"""

import argparse

from purl.entry import run_main
from purl.stages.score import epoch_results


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exp_dir")
    parser.add_argument("--scoring", default="cosine", choices=("cosine", "as-norm"))
    return parser


def main() -> int:
    args = get_parser().parse_args()
    print(epoch_results(args.exp_dir, args.scoring), end="")
    return 0


if __name__ == "__main__":
    run_main(main)
