#!/usr/bin/env python3
"""Usage: prepare_cnceleb.py [--cn2-root DIR] <cn1-root> <data-root>

Stage 0 of egs/cnceleb: <data-root>/cnceleb_train from CN-Celeb1's dev speakers
(<cn1-root>/dev/dev.lst) and, with --cn2-root, all of CN-Celeb2 (spk.lst); and
<data-root>/cnceleb1_eval from CN-Celeb1's eval lists: trials_concat (the
released concatenated enrollment file against each test utterance, as the
original work scores CN-Celeb), and avg_enroll_trials with enroll_avg (the
enrollment model as the mean of its utterances' embeddings). <cn1-root> is the
extracted CN-Celeb_flac/ folder (data/, dev/, eval/), <cn2-root> CN-Celeb2_flac/.

e.g.: local/prepare_cnceleb.py --cn2-root /data/CN-Celeb2_flac /data/CN-Celeb_flac data
"""

import argparse

from purl.data.cnceleb import prepare_cnceleb
from purl.entry import run_main


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cn1_root")
    parser.add_argument("data_root")
    parser.add_argument("--cn2-root", help="CN-Celeb2_flac/ (leave out to train on CN-Celeb1 dev only)")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    summary = prepare_cnceleb(args.cn1_root, args.cn2_root, args.data_root)
    for name, n in summary.items():
        print(f"prepare_cnceleb.py: wrote {args.data_root}/{name} ({n} utterances)")
    return 0


if __name__ == "__main__":
    run_main(main)
