#!/usr/bin/env python3
"""Usage: prepare_musan.py <musan-root> <data-root>

Augmentation sources from MUSAN (https://www.openslr.org/17/): writes
<data-root>/musan_noise, musan_music and musan_speech, data dirs whose wav.scp
lists the files of noise/, music/ and speech/. Name them in a config's augment
section (augment.noise, augment.music, augment.babble).

e.g.: local/prepare_musan.py /data/musan data
"""

import argparse

from purl.data.noise_corpora import prepare_musan
from purl.entry import run_main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("musan_root")
    parser.add_argument("data_root")
    args = parser.parse_args()
    summary = prepare_musan(args.musan_root, args.data_root)
    for name, n in summary.items():
        print(f"prepare_musan.py: wrote {args.data_root}/{name} ({n} files)")
    return 0


if __name__ == "__main__":
    run_main(main)
