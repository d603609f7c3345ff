#!/usr/bin/env python3
"""Usage: embedding_jobs.py [options] <checkpoint> <data-dir> <out-dir> <nj>

First step of embedding extraction (called by steps/extract_embeddings.sh):
validates <data-dir>, compares the settings records (purl.records: the
checkpoint's bytes, --num-crops, --crop-frames and the features) with what
they would be now, and prints on stdout, one 'key value' per line:

    nj <jobs, at most the number of utterances>
    status complete|todo
    todo <job numbers whose record differs>

e.g.: steps/embedding_jobs.py exp/m/models/final.pt data/test exp/m/embeddings/test 4
"""

import argparse

from purl.entry import run_main
from purl.stages.embeddings import add_embedding_options, embedding_options_of, plan_embedding_jobs


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
    plan = plan_embedding_jobs(args.checkpoint, args.data_dir, args.out_dir, args.nj, embedding_options_of(args))
    for key, value in plan.items():
        print(key, value)
    return 0


if __name__ == "__main__":
    run_main(main)
