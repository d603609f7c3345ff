#!/usr/bin/env python3
"""Usage: regroup_data_dir.py [options] <xvector.scp> <train-data-dir> <out-data-dir>

Stage 5's regroup method: the labels of <train-data-dir> regrouped in the
stage-4 embeddings. A label whose utterances fall in two groups (spherical
2-means) as far apart as a speaker is from its nearest other speaker (the
median over labels), each group tighter than the label and the smaller one at
least --min-share of it and --min-utts, holds two voices: the smaller group
takes a new label <label>-2. Two labels that are each other's nearest and as
alike as two random halves of either (their self-consistency, the mean over
--halves halvings) are one voice: joined under the larger one's name. Every
utterance is kept. <out-data-dir> holds the new labels and
  regroups      'split <label> <new-label> <moved> <cosine>' and 'join <label> <into> <cosine> <self-consistency>'
  regroup.json  counts and, with utt2truespk (stage 2), the pair precision and recall
                of the labels before and after and the splits and joins that were right
  regroup.settings  what it was made from: a rerun with the same settings is skipped
See purl/regroup.py for why each cut is what it is.

e.g.: steps/regroup_data_dir.py exp/supcon_tuned_merge0.2_seed0/embeddings/train/xvector.scp \\
        data/train_merge0.2_seed0 data/train_merge0.2_seed0_regrouped
"""

import argparse
import logging

from purl.entry import run_main
from purl.regroup import RegroupSettings
from purl.stages.regroup_data_dir import run_regroup

DEFAULTS = RegroupSettings()


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xvector_scp")
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--min-share", type=float, default=DEFAULTS.min_share,
                        help="the smaller voice of a split holds at least this share of its label's utterances")
    parser.add_argument("--min-utts", type=int, default=DEFAULTS.min_utts,
                        help="and at least this many utterances")
    parser.add_argument("--halves", type=int, default=DEFAULTS.halves,
                        help="random halvings per label that measure its self-consistency (join)")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    settings = RegroupSettings(min_share=args.min_share, min_utts=args.min_utts, halves=args.halves)
    report = run_regroup(args.xvector_scp, args.data_dir, args.out_dir, settings)
    if report is None:
        return 0
    logging.info("%s: %d labels split, %d joined: %d labels from %d", args.out_dir, report["splits"],
                 report["joins"], report["labels"], report["labels_before"])
    if "pair_precision" in report:
        logging.info("against utt2truespk: %d of %d splits and %d of %d joins right; same-label pairs of one "
                     "speaker %.3f -> %.3f (pair precision), one speaker's pairs under one label %.3f -> %.3f "
                     "(pair recall)", report["splits_right"], report["splits"], report["joins_right"],
                     report["joins"], report["pair_precision_before"], report["pair_precision"],
                     report["pair_recall_before"], report["pair_recall"])
    return 0


if __name__ == "__main__":
    run_main(main)
