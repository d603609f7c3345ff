#!/usr/bin/env python3
"""Usage: embedding_mean.py <xvector.scp> <mean.vec>

The mean of a set of embeddings, as a Kaldi text vector ("[ 0.1 0.2 ... ]"): what
scoring subtracts before the cosine when given a training set's embeddings.

e.g.: steps/embedding_mean.py exp/ecapa/embeddings/train/xvector.scp exp/ecapa/embeddings/train/mean.vec
"""

import argparse
import os
import sys

from purl.data.datadir import DataDirError
from purl.results import load_embeddings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scp")
    parser.add_argument("mean")
    args = parser.parse_args()
    try:
        _, emb = load_embeddings(args.scp)
    except DataDirError as e:
        print(f"embedding_mean.py: {e}", file=sys.stderr)
        return 1
    tmp = args.mean + ".tmp"
    with open(tmp, "w") as f:
        f.write("[ " + " ".join(f"{v:.7g}" for v in emb.mean(0)) + " ]\n")
    os.replace(tmp, args.mean)
    return 0


if __name__ == "__main__":
    sys.exit(main())
