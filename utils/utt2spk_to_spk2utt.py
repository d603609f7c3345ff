#!/usr/bin/env python3
"""Usage: utt2spk_to_spk2utt.py [--reverse] <file>   (writes to stdout)

utt2spk -> spk2utt; with --reverse, spk2utt -> utt2spk. Output sorted as LC_ALL=C.

e.g.: utils/utt2spk_to_spk2utt.py data/train/utt2spk > data/train/spk2utt
"""

import argparse

from purl.data.datadir import read_kv, spk2utt_to_utt2spk, utt2spk_to_spk2utt
from purl.entry import run_main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("--reverse", action="store_true", help="spk2utt -> utt2spk")
    args = parser.parse_args()
    table = read_kv(args.file, multi=args.reverse, check_sorted=False)
    out = spk2utt_to_utt2spk(table) if args.reverse else utt2spk_to_spk2utt(table)
    for key, value in out.items():
        print(key, value if isinstance(value, str) else " ".join(value))
    return 0


if __name__ == "__main__":
    run_main(main)
