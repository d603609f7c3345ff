#!/usr/bin/env python3
"""Usage: copy_data_dir.py <src-dir> <dst-dir>

Copies a data dir (with its audio: wav.scp) without its features (feats.scp,
utt2num_frames, feats.settings, cmvn.scp, vad.scp; no folders such as split*/,
log/ or .backup/), so that stage 1 makes features of another type in
<dst-dir> while <src-dir> keeps its own: the recipes' stage 1 makes the original work's
(--feature-type speechbrain) in <dir>_sbfbank. A <dst-dir> that is such a copy
of <src-dir> already is kept, with its features (the utterances stage 1
dropped from it for failing may be missing); one that is not (a copy of
another version of <src-dir>, or another dir) is refused.

e.g.: utils/copy_data_dir.py data/vox2_dev data/vox2_dev_sbfbank
"""

import argparse

from purl.entry import run_main
from purl.stages.fbank import copy_data_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src_dir")
    parser.add_argument("dst_dir")
    args = parser.parse_args()
    if copy_data_dir(args.src_dir, args.dst_dir):
        print(f"copy_data_dir.py: copied {args.src_dir} to {args.dst_dir}, without its features")
    else:
        print(f"copy_data_dir.py: {args.dst_dir} is a copy of {args.src_dir} already; kept")
    return 0


if __name__ == "__main__":
    run_main(main)
