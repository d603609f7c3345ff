#!/usr/bin/env python3
"""Usage: subset_data_dir.py (--utt-list FILE | --spk-list FILE) <src-dir> <dst-dir>

Copies the part of a data dir for the utterances (or speakers) listed one per line
in FILE (the first field of each line counts, so an utt2spk or spk2utt works too).

e.g.: utils/subset_data_dir.py --spk-list local/dev_speakers data/train data/dev
"""

import argparse
import sys

from purl.data.datadir import DataDirError, subset_data_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--utt-list")
    which.add_argument("--spk-list")
    parser.add_argument("src_dir")
    parser.add_argument("dst_dir")
    args = parser.parse_args()
    with open(args.utt_list or args.spk_list, encoding="utf-8") as f:
        keys = [line.split()[0] for line in f if line.strip()]
    try:
        if args.utt_list:
            data = subset_data_dir(args.src_dir, args.dst_dir, utts=keys)
        else:
            data = subset_data_dir(args.src_dir, args.dst_dir, speakers=keys)
    except DataDirError as e:
        print(f"subset_data_dir.py: {e}", file=sys.stderr)
        return 1
    print(f"subset_data_dir.py: wrote {data.path}: {len(data)} utterances, {len(data.spk2utt)} speakers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
