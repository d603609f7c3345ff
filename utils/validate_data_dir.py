#!/usr/bin/env python3
"""Usage: validate_data_dir.py [--require FILES] [--check-audio] <data-dir>

Checks a Kaldi data dir: files sorted under LC_ALL=C with unique keys, utterance
ids prefixed by their speaker, spk2utt agreeing with utt2spk, every per-utterance
file covering the same utterances, trial lists naming existing utterances (no
utterance against itself), and (with --check-audio) every wav.scp path an
existing, non-empty file. Prints every problem it finds, with the file, the
line and the fix; exits 1 when there is any.

e.g.: utils/validate_data_dir.py --require wav.scp,utt2spk,feats.scp data/train
"""

import argparse

from purl.data.datadir import validate_data_dir
from purl.entry import run_main


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--require", default="utt2spk,spk2utt", help="comma-separated files that must exist")
    parser.add_argument("--check-audio", action="store_true", help="check that every wav.scp path is an existing, non-empty file")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    data = validate_data_dir(args.data_dir, require=args.require.split(","), check_audio=args.check_audio)
    print(f"validate_data_dir.py: {data.path} is valid: {len(data)} utterances, {len(data.spk2utt)} speakers")
    return 0


if __name__ == "__main__":
    run_main(main)
