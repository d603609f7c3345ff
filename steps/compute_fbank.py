#!/usr/bin/env python3
"""Usage: compute_fbank.py [options] <data-dir> <ark>

One job of stage 1: 80-dim fbank (Kaldi's, or with --feature-type speechbrain the
original work's front end) for every utterance of <data-dir>/wav.scp,
written Kaldi-compressed to <ark> with <ark>.scp, .utt2num_frames, .utt2dur and
.failed and .settings beside it (see purl.stages.fbank.make_fbank_job). steps/make_fbank.sh runs
it in parallel over a split data dir and merges the outputs.

e.g.: python steps/compute_fbank.py data/train/split4/1 fbank/train/raw_fbank.1.ark
"""

import argparse
import logging
import sys

from tqdm import tqdm

from purl.data.datadir import read_kv
from purl.entry import run_main
from purl.stages.fbank import add_fbank_options, fbank_options_of, make_fbank_job


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("ark")
    add_fbank_options(parser)
    return parser


def main() -> int:
    args = get_parser().parse_args()
    wav_scp = read_kv(f"{args.data_dir}/wav.scp")
    with tqdm(total=len(wav_scp), desc="fbank", unit="utt", mininterval=10, file=sys.stdout) as bar:
        result = make_fbank_job(wav_scp, args.ark, **fbank_options_of(args), on_utt=bar.update)
    line_of = {utt: n for n, utt in enumerate(wav_scp, 1)}
    for utt, why in result.failed.items():
        logging.warning("%s (%s/wav.scp line %d): %s", utt, args.data_dir, line_of[utt], why)
    logging.info("%d utterances done, %d failed", result.done, len(result.failed))
    return 0


if __name__ == "__main__":
    run_main(main)
