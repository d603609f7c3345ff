#!/usr/bin/env python3
"""Usage: fix_data_dir.py <data-dir>

Keeps the utterances that every per-utterance file of <data-dir> has (wav.scp,
utt2spk, utt2dur, feats.scp, utt2num_frames, utt2truespk), sorts the files under
LC_ALL=C, drops repeated keys and unparsable lines, and remakes spk2utt. The old
files are kept in <data-dir>/.backup/.

e.g.: utils/fix_data_dir.py data/train
"""

import argparse

from purl.data.datadir import fix_data_dir
from purl.entry import run_main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    args = parser.parse_args()
    kept, dropped = fix_data_dir(args.data_dir)
    print(f"fix_data_dir.py: {args.data_dir}: kept {kept} utterances, dropped {dropped} (old files in {args.data_dir}/.backup)")
    return 0


if __name__ == "__main__":
    run_main(main)
