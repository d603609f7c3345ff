#!/usr/bin/env python3
"""Usage: merge_fbank.py [--max-fail-frac F] <data-dir> <fbank-dir> <nj>

Last step of stage 1 (called by steps/make_fbank.sh): merges the nj jobs' scp,
utt2num_frames and utt2dur into <data-dir>, feats.scp last. Fails, merging
nothing, when more than F of the utterances could not be read.

e.g.: steps/merge_fbank.py data/train fbank/train 4
"""

import argparse
import sys

from purl.data.datadir import DataDirError
from purl.features import FeatureError, merge_fbank_jobs


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("fbank_dir")
    parser.add_argument("nj", type=int)
    parser.add_argument("--max-fail-frac", type=float, default=0.01)
    return parser


def main() -> int:
    args = get_parser().parse_args()
    try:
        failed = merge_fbank_jobs(args.data_dir, args.fbank_dir, args.nj, max_fail_frac=args.max_fail_frac)
    except (FeatureError, DataDirError, FileNotFoundError) as e:
        print(f"merge_fbank.py: {e}", file=sys.stderr)
        return 1
    if failed:
        print(f"merge_fbank.py: dropped {len(failed)} unreadable utterance(s) from {args.data_dir} "
              f"(listed in {args.data_dir}/log/fbank_failed)")
    print(f"merge_fbank.py: wrote {args.data_dir}/feats.scp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
