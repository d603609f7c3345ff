#!/usr/bin/env python3
"""Usage: merge_embeddings.py [options] <checkpoint> <data-dir> <out-dir> <nj>

Last step of embedding extraction (called by steps/extract_embeddings.sh):
joins the nj jobs' xvector.<n>.scp into <out-dir>/xvector.scp, after checking
that every embedding is finite, and writes mean.vec (the set's mean, a Kaldi
text vector: what scoring subtracts) and xvector.settings (what the embeddings
were made from), xvector.scp last.

e.g.: steps/merge_embeddings.py exp/m/models/final.pt data/test exp/m/embeddings/test 4
"""

import argparse
import logging

from purl.entry import run_main
from purl.stages.embeddings import add_embedding_options, embedding_options_of, merge_embedding_jobs


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("nj", type=int)
    add_embedding_options(parser)
    return parser


def main() -> int:
    args = get_parser().parse_args()
    count = merge_embedding_jobs(args.checkpoint, args.data_dir, args.out_dir, args.nj, embedding_options_of(args))
    logging.info("wrote %s/xvector.scp (%d embeddings) and mean.vec", args.out_dir, count)
    return 0


if __name__ == "__main__":
    run_main(main)
