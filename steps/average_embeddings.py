#!/usr/bin/env python3
"""Usage: average_embeddings.py <xvector.scp> <models> <out-dir>

Stage 6 for enrollment models made of several utterances (CN-Celeb's
avg_enroll_trials): <models> lists `model utt1 utt2 ...`; each model's embedding
is the plain mean of its utterances' embeddings (the raw vectors, as stage 6's
--mean and cosine then treat any embedding). Writes <out-dir>/models.{ark,scp}
and <out-dir>/xvector.scp: the input embeddings and the models together, which
steps/score.py reads. Skipped when <out-dir>/xvector.scp is newer than its inputs.

e.g.: steps/average_embeddings.py exp/m/embeddings/eval/xvector.scp \\
        data/cnceleb1_eval/enroll_avg exp/m/embeddings/eval_avg
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from purl.data.datadir import DataDirError, read_kv, sort_key, write_text_atomic
from purl.features import ArkWriter
from purl.vectors import load_embeddings
from purl.scoring import speaker_means


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xvector_scp")
    parser.add_argument("models")
    parser.add_argument("out_dir")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    name = Path(sys.argv[0]).name
    out = Path(args.out_dir)
    done = out / "xvector.scp"
    if done.is_file() and all(done.stat().st_mtime > Path(p).stat().st_mtime for p in (args.xvector_scp, args.models)):
        print(f"{name}: {done} is complete; skipping")
        return 0
    try:
        utts, emb = load_embeddings(args.xvector_scp)
        models = read_kv(args.models, multi=True)
        row = {u: i for i, u in enumerate(utts)}
        rows, owner = [], []
        for n, (model, members) in enumerate(models.items()):
            if model in row:
                raise DataDirError(f"{args.models}: model '{model}' has the id of an utterance of {args.xvector_scp}")
            missing = next((u for u in members if u not in row), None)
            if missing is not None:
                raise DataDirError(f"{args.models}: '{missing}' of model '{model}' has no embedding in "
                                   f"{args.xvector_scp} (embed the data dir that lists the models)")
            rows += [row[u] for u in members]
            owner += [n] * len(members)
    except DataDirError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    means = speaker_means(emb[rows], np.array(owner)).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    ark = (out / "models.ark").resolve()
    tmp_ark, tmp_scp = ark.with_name("models.ark.tmp"), ark.with_name("models.scp.tmp")
    with ArkWriter(tmp_ark, tmp_scp, ark, compress=False) as writer:
        for model, vector in zip(models, means):
            writer(model, vector)
    os.replace(tmp_ark, ark)
    os.replace(tmp_scp, ark.with_suffix(".scp"))
    lines = Path(args.xvector_scp).read_text().splitlines() + ark.with_suffix(".scp").read_text().splitlines()
    write_text_atomic(done, "".join(f"{line}\n" for line in sorted(lines, key=lambda l: sort_key(l.split()[0]))))
    print(f"{name}: {len(models)} models averaged from {len(rows)} embeddings into {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
