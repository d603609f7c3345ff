#!/usr/bin/env python3
"""Usage: subset_data_dir.py (--utt-list FILE | --spk-list FILE | --per-speaker N) <src-dir> <dst-dir>

Copies the part of a data dir for the utterances (or speakers) listed one per line
in FILE (the first field of each line counts, so an utt2spk or spk2utt works too),
or the first N utterances (in sorted order) of every speaker.

e.g.: utils/subset_data_dir.py --spk-list local/dev_speakers data/train data/dev
"""

import argparse

from purl.data.datadir import DataDir, subset_data_dir
from purl.entry import run_main
from purl.stages.fbank import record_derived_features


def read_keys(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--utt-list")
    which.add_argument("--spk-list")
    which.add_argument("--per-speaker", type=int)
    parser.add_argument("src_dir")
    parser.add_argument("dst_dir")
    args = parser.parse_args()
    if args.per_speaker:
        spk2utt = DataDir(args.src_dir).spk2utt
        data = subset_data_dir(args.src_dir, args.dst_dir,
                               utts=[u for utts in spk2utt.values() for u in utts[:args.per_speaker]])
    elif args.utt_list:
        data = subset_data_dir(args.src_dir, args.dst_dir, utts=read_keys(args.utt_list))
    else:
        data = subset_data_dir(args.src_dir, args.dst_dir, speakers=read_keys(args.spk_list))
    record_derived_features(data.path, args.src_dir, user="subset_data_dir.py")
    print(f"subset_data_dir.py: wrote {data.path}: {len(data)} utterances, {len(data.spk2utt)} speakers")
    return 0


if __name__ == "__main__":
    run_main(main)
