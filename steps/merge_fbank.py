#!/usr/bin/env python3
"""Usage: merge_fbank.py [options] <data-dir> <fbank-dir> <nj>

Last step of stage 1 (called by steps/make_fbank.sh): merges the nj jobs' scp,
utt2num_frames and utt2dur into <data-dir>, then feats.settings (the options
and audio the features were made from) and feats.scp last. Fails, merging
nothing, when more than F of the utterances could not be read, or when a trial
list of the dir names one that could not.

e.g.: steps/merge_fbank.py data/train fbank/train 4
"""

import argparse
import logging

from purl.entry import run_main
from purl.stages.fbank import add_fbank_options, fbank_options_of, merge_fbank_jobs


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("fbank_dir")
    parser.add_argument("nj", type=int)
    parser.add_argument("--max-fail-frac", type=float, default=0.01)
    add_fbank_options(parser)  # the options the jobs ran with, for the record (fbank_jobs.py compares it)
    return parser


def main() -> int:
    args = get_parser().parse_args()
    failed = merge_fbank_jobs(args.data_dir, args.fbank_dir, args.nj, max_fail_frac=args.max_fail_frac,
                              settings=fbank_options_of(args))
    if failed:
        logging.warning("dropped %d unreadable utterance(s) from %s (listed in %s/log/fbank_failed)",
                        len(failed), args.data_dir, args.data_dir)
    logging.info("wrote %s/feats.scp", args.data_dir)
    return 0


if __name__ == "__main__":
    run_main(main)
