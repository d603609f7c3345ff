#!/usr/bin/env python3
"""Usage: embedding_jobs.py [options] <checkpoint> <data-dir> <out-dir> <nj>

First step of embedding extraction (called by steps/extract_embeddings.sh):
validates <data-dir>, compares the settings records (purl.settings: the
checkpoint's bytes, --num-crops, --crop-frames and the features) with what
they would be now, and prints on stdout, one 'key value' per line:

    nj <jobs, at most the number of utterances>
    status complete|todo
    todo <job numbers whose record differs>

e.g.: steps/embedding_jobs.py exp/m/models/final.pt data/test exp/m/embeddings/test 4
"""

import argparse
import sys
from pathlib import Path

from purl.data.datadir import DataDirError, split_data_dir, validate_data_dir
from purl.vectors import XVECTOR_SETTINGS, embedding_settings
from purl.settings import differences, matches, read_record, text_digest


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


def plan(args) -> dict:
    if args.nj < 1 or args.num_crops < 0 or args.crop_frames < 1:
        raise ValueError(f"--nj {args.nj}, --num-crops {args.num_crops}, --crop-frames {args.crop_frames}: "
                         "need nj >= 1, num-crops >= 0 (0: whole utterances), crop-frames >= 1")
    if not Path(args.checkpoint).is_file():
        raise ValueError(f"{args.checkpoint}: no such checkpoint (train the model first)")
    data = Path(args.data_dir)
    if not (data / "feats.scp").is_file():
        raise DataDirError(f"{data}/feats.scp missing (run stage 1 for {data})")
    data = validate_data_dir(data, require=("utt2spk", "feats.scp", "utt2num_frames"))
    out = Path(args.out_dir)
    nj = min(args.nj, len(data))
    checkpoint = text_digest(args.checkpoint)
    options = {"num_crops": args.num_crops, "crop_frames": args.crop_frames, "random_crop_seed": args.random_crop_seed}
    whole = embedding_settings(checkpoint, data.path / "feats.scp", **options)
    if (out / "xvector.scp").is_file():
        record = read_record(out / XVECTOR_SETTINGS)
        expected = {**whole, "xvector_scp": text_digest(out / "xvector.scp")}
        if record is not None and not differences(record, expected):
            return {"nj": nj, "status": "complete"}
        why = "; ".join(differences(record, expected)) if record is not None else f"no {out / XVECTOR_SETTINGS}"
        print(f"embedding_jobs.py: {out}/xvector.scp is not of these settings ({why}); extracting again",
              file=sys.stderr)
    parts = split_data_dir(data.path, nj)
    todo = [n for n, part in enumerate(parts, 1)
            if not matches(out / f"xvector.{n}.settings", embedding_settings(checkpoint, part / "feats.scp", **options))]
    return {"nj": nj, "status": "todo", "todo": " ".join(map(str, todo))}


def main() -> int:
    args = get_parser().parse_args()
    try:
        result = plan(args)
    except (DataDirError, ValueError, OSError) as e:
        print(f"embedding_jobs.py: {e}", file=sys.stderr)
        return 1
    for key, value in result.items():
        print(key, value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
