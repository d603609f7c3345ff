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
import os
import sys
from pathlib import Path

from purl.data.datadir import DataDirError, read_kv, write_kv, write_text_atomic
from purl.settings import text_digest, write_record
from purl.vectors import XVECTOR_SETTINGS, embedding_settings, load_embeddings


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("nj", type=int)
    parser.add_argument("--num-crops", type=int, default=0)
    parser.add_argument("--crop-frames", type=int, default=300)
    parser.add_argument("--random-crop-seed", type=int, default=None, help="one random crop per utterance (with --num-crops 1)")
    return parser


def merge(args) -> int:
    out = Path(args.out_dir)
    table = {}
    for n in range(1, args.nj + 1):
        table.update(read_kv(out / f"xvector.{n}.scp", check_sorted=False))
    tmp = out / "xvector.scp.tmp"
    write_kv(tmp, table)
    utts, emb = load_embeddings(tmp)  # refuses non-finite embeddings, naming the utterance
    write_text_atomic(out / "mean.vec", "[ " + " ".join(f"{v:.7g}" for v in emb.mean(0)) + " ]\n")
    (out / XVECTOR_SETTINGS).unlink(missing_ok=True)
    settings = embedding_settings(text_digest(args.checkpoint), Path(args.data_dir) / "feats.scp",
                                  num_crops=args.num_crops, crop_frames=args.crop_frames,
                                  random_crop_seed=args.random_crop_seed)
    write_record(out / XVECTOR_SETTINGS, {**settings, "xvector_scp": text_digest(tmp)})
    os.replace(tmp, out / "xvector.scp")
    return len(utts)


def main() -> int:
    args = get_parser().parse_args()
    try:
        count = merge(args)
    except (DataDirError, OSError) as e:
        print(f"merge_embeddings.py: {e}", file=sys.stderr)
        return 1
    print(f"merge_embeddings.py: wrote {args.out_dir}/xvector.scp ({count} embeddings) and mean.vec")
    return 0


if __name__ == "__main__":
    sys.exit(main())
