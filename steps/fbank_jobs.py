#!/usr/bin/env python3
"""Usage: fbank_jobs.py [options] <data-dir> <fbank-root> <nj>

First step of stage 1 (called by steps/make_fbank.sh): validates <data-dir>,
decides from the settings records (purl.records) what is left to do and prints
it on stdout, one 'key value' per line:

    fbank_dir <where this dir's arks go: <fbank-root>/<name>_<hash of its path>>
    nj <jobs, at most the number of utterances>
    status complete|todo     (complete: feats.scp is stage 1's output for these
                              options and this audio; nothing to do)
    todo <job numbers whose record differs from what they would write now>

A feats.scp without a record (made by another tool, e.g. Kaldi) is kept as it
is, with a note: its dimension is checked when a model reads it.

e.g.: steps/fbank_jobs.py --num-mel-bins 80 data/train fbank 4
"""

import argparse

from purl.entry import run_main
from purl.stages.fbank import add_fbank_options, fbank_options_of, plan_fbank_jobs


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("fbank_root")
    parser.add_argument("nj", type=int)
    add_fbank_options(parser)
    return parser


def main() -> int:
    args = get_parser().parse_args()
    for key, value in plan_fbank_jobs(args.data_dir, args.fbank_root, args.nj, fbank_options_of(args)).items():
        print(key, value)
    return 0


if __name__ == "__main__":
    run_main(main)
