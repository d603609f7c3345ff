#!/usr/bin/env python3
"""Usage: split_data_dir.py <data-dir> <nj>

Splits a data dir into <data-dir>/split<nj>/{1..nj}/ of near-equal utterance
counts (an existing split newer than utt2spk is kept).

e.g.: utils/split_data_dir.py data/train 8
"""

import argparse

from purl.data.datadir import split_data_dir
from purl.entry import run_main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("nj", type=int)
    args = parser.parse_args()
    parts = split_data_dir(args.data_dir, args.nj)
    print(f"split_data_dir.py: {args.data_dir} -> {parts[0].parent}/{{1..{len(parts)}}}")
    return 0


if __name__ == "__main__":
    run_main(main)
