#!/usr/bin/env python3
"""Usage: prepare_rirs.py [--rooms LIST] <rirs-noises-root> <out-data-dir>

Augmentation sources from RIRS_NOISES (https://www.openslr.org/28/): a data dir
whose wav.scp lists the simulated room impulse responses of --rooms
(smallroom,mediumroom as Kaldi's voxceleb/v2). Name it in augment.rirs.

e.g.: local/prepare_rirs.py /data/RIRS_NOISES data/rirs
"""

import argparse

from purl.data.noise_corpora import prepare_rirs
from purl.entry import run_main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rirs_root")
    parser.add_argument("out_dir")
    parser.add_argument("--rooms", default="smallroom,mediumroom", help="simulated_rirs/ subfolders")
    args = parser.parse_args()
    n = prepare_rirs(args.rirs_root, args.out_dir, [r for r in args.rooms.split(",") if r])
    print(f"prepare_rirs.py: wrote {args.out_dir} ({n} impulse responses)")
    return 0


if __name__ == "__main__":
    run_main(main)
