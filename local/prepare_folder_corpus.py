#!/usr/bin/env python3
"""Usage: prepare_folder_corpus.py [options] <corpus-root> <train-dir> [<test-dir>]

Stage 0 for a corpus of your own: every audio file (wav, flac, ogg, opus; m4a,
aac and mp3 decoded by PyAV) under <corpus-root>/<speaker>/ becomes an utterance
'<speaker>-<path below the speaker folder, '/' as '-'>' of speaker <speaker>.
With --num-test-speakers N, N speakers drawn with --seed go to <test-dir> with a
trial list <test-dir>/trials: every target pair up to --max-target-trials and as
many non-target pairs. With --num-outsider-speakers M and --outsider-dir DIR, M
of the other speakers go to DIR instead of <train-dir>: never trained on or
tested, the source of stage 2's open-set noise (--noise-type open).

e.g.: local/prepare_folder_corpus.py --num-test-speakers 25 \\
        ../shared/data/speechocean762-train data/so762_train data/so762_test
"""

import argparse

from purl.data.prepare import prepare_folder_corpus
from purl.entry import run_main
from purl.errors import UsageError


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus_root")
    parser.add_argument("train_dir")
    parser.add_argument("test_dir", nargs="?")
    parser.add_argument("--num-test-speakers", type=int, default=0)
    parser.add_argument("--max-target-trials", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-outsider-speakers", type=int, default=0)
    parser.add_argument("--outsider-dir")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    if args.num_test_speakers > 0 and args.test_dir is None:
        raise UsageError("--num-test-speakers needs a <test-dir> argument")
    if args.num_outsider_speakers > 0 and args.outsider_dir is None:
        raise UsageError("--num-outsider-speakers needs --outsider-dir")
    summary = prepare_folder_corpus(
        args.corpus_root, args.train_dir,
        test_dir=args.test_dir,
        num_test_speakers=args.num_test_speakers,
        max_target_trials=args.max_target_trials,
        seed=args.seed,
        outsider_dir=args.outsider_dir,
        num_outsider_speakers=args.num_outsider_speakers,
    )
    for out_dir, n in summary.items():
        print(f"prepare_folder_corpus.py: wrote {out_dir} ({n} utterances)")
    return 0


if __name__ == "__main__":
    run_main(main)
