#!/usr/bin/env python3
"""Usage: average_embeddings.py <xvector.scp> <models> <out-dir>

Stage 6 for enrollment models made of several utterances (CN-Celeb's
avg_enroll_trials): <models> lists `model utt1 utt2 ...`; each model's embedding
is the plain mean of its utterances' embeddings (the raw vectors, as stage 6's
--mean and cosine then treat any embedding). Writes <out-dir>/models.{ark,scp}
and <out-dir>/xvector.scp: the input embeddings and the models together, which
steps/score.py reads. <out-dir>/average.settings records the inputs: a rerun
with the same ones is skipped, with others redone.

e.g.: steps/average_embeddings.py exp/m/embeddings/eval/xvector.scp \\
        data/cnceleb1_eval/enroll_avg exp/m/embeddings/eval_avg
"""

import argparse
import logging

from purl.entry import run_main
from purl.stages.embeddings import average_embeddings


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xvector_scp")
    parser.add_argument("models")
    parser.add_argument("out_dir")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    summary = average_embeddings(args.xvector_scp, args.models, args.out_dir)
    if summary is not None:
        logging.info("%d models averaged from %d embeddings into %s/xvector.scp", summary["models"],
                     summary["embeddings"], args.out_dir)
    return 0


if __name__ == "__main__":
    run_main(main)
