#!/usr/bin/env python3
"""Usage: filter_data_dir.py [--keep-ratio R] <xvector.scp> <train-data-dir> <out-data-dir>

Stage 5's filtering baseline (the original submission's filter_noisy_samples.py):
per speaker of <train-data-dir> (its possibly noisy labels), the centroid of the
stage-4 embeddings; the utterances closest to it by cosine, a fraction R of each
speaker (at least one), make <out-data-dir>, which the same trainer then
continues on. <out-data-dir>/removed lists the others (`utt speaker cosine`);
with utt2truespk (stage 2) the script prints how many of the removed were
mislabelled. Skipped when <out-data-dir>/utt2spk is newer than <xvector.scp>.

e.g.: steps/filter_data_dir.py --keep-ratio 0.5 exp/supcon_noisy0.2_seed0/embeddings/train/xvector.scp \\
        data/train_noisy0.2_seed0 data/train_noisy0.2_seed0_filtered0.5
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from purl.data.datadir import DataDir, DataDirError, subset_data_dir, write_text_atomic
from purl.filtering import centroid_filter
from purl.vectors import load_embeddings


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xvector_scp")
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--keep-ratio", type=float, default=0.5, help="fraction of each speaker's utterances kept")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    name = Path(sys.argv[0]).name
    out = Path(args.out_dir)
    if (out / "utt2spk").is_file() and Path(args.xvector_scp).is_file() and \
            (out / "utt2spk").stat().st_mtime > Path(args.xvector_scp).stat().st_mtime:
        print(f"{name}: {out} is complete; skipping (delete it to redo)")
        return 0
    try:
        if not 0 < args.keep_ratio <= 1:
            raise ValueError(f"--keep-ratio {args.keep_ratio} must be in (0, 1]")
        data = DataDir(args.data_dir)
        utts, emb = load_embeddings(args.xvector_scp)
        row = {u: i for i, u in enumerate(utts)}
        missing = [u for u in data.utts if u not in row]
        if missing:
            raise DataDirError(f"{args.xvector_scp}: no embedding for '{missing[0]}' of {data.path} "
                               f"({len(missing)} missing); rerun steps/extract_embeddings.sh on this data dir")
        emb = emb[[row[u] for u in data.utts]]
        keep, cosine = centroid_filter(emb, np.array([data.utt2spk[u] for u in data.utts]), args.keep_ratio)
        # Built beside the target and renamed: a killed run leaves no dir that looks complete.
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subset_data_dir(data.path, tmp, utts=[u for u, k in zip(data.utts, keep) if k])
    except (DataDirError, ValueError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    removed = [(u, c) for u, k, c in zip(data.utts, keep, cosine) if not k]
    write_text_atomic(tmp / "removed", "".join(f"{u} {data.utt2spk[u]} {c:.4f}\n" for u, c in removed))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    print(f"{name}: kept {int(keep.sum())} of {len(keep)} utterances ({args.keep_ratio:g} of each speaker) in {out}")
    if data.has("utt2truespk"):
        truth = data.table("utt2truespk")
        wrong = {u for u in data.utts if truth[u] != data.utt2spk[u]}
        caught = sum(u in wrong for u, _ in removed)
        print(f"{name}: {caught} of the {len(removed)} removed were mislabelled; "
              f"{len(wrong) - caught} of {len(wrong)} mislabelled utterances kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
