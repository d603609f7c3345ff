#!/usr/bin/env python3
"""Usage: split_data_dir.py <data-dir> <nj>

Splits a data dir into <data-dir>/split<nj>/{1..nj}/ of near-equal utterance
counts (an existing split newer than utt2spk is kept).

e.g.: utils/split_data_dir.py data/train 8
"""

import argparse
import sys

from purl.data.datadir import DataDirError, split_data_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("nj", type=int)
    args = parser.parse_args()
    try:
        parts = split_data_dir(args.data_dir, args.nj)
    except (DataDirError, ValueError) as e:
        print(f"split_data_dir.py: {e}", file=sys.stderr)
        return 1
    print(f"split_data_dir.py: {args.data_dir} -> {parts[0].parent}/{{1..{len(parts)}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
