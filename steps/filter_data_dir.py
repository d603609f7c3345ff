#!/usr/bin/env python3
"""Usage: filter_data_dir.py [--keep-ratio R] <xvector.scp> <train-data-dir> <out-data-dir>

Stage 5's filtering baseline (the original submission's filter_noisy_samples.py):
per speaker of <train-data-dir> (its possibly noisy labels), the centroid of the
stage-4 embeddings; the utterances closest to it by cosine, a fraction R of each
speaker (at least one), make <out-data-dir>, which the same trainer then
continues on. <out-data-dir>/removed lists the others (`utt speaker cosine`);
with utt2truespk (stage 2) the script prints how many of the removed were
mislabelled. <out-data-dir>/filter.settings records what it was made from: a
rerun with the same settings and inputs is skipped, with others redone.

e.g.: steps/filter_data_dir.py --keep-ratio 0.5 exp/supcon_tuned_noisy0.2_seed0/embeddings/train/xvector.scp \\
        data/train_noisy0.2_seed0 data/train_noisy0.2_seed0_filtered0.5
"""

import argparse
import logging

from purl.entry import run_main
from purl.stages.filter_data_dir import run_filtering


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xvector_scp")
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--keep-ratio", type=float, default=0.5, help="fraction of each speaker's utterances kept")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    summary = run_filtering(args.xvector_scp, args.data_dir, args.out_dir, args.keep_ratio)
    if summary is None:
        return 0
    logging.info("kept %d of %d utterances (%g of each speaker) in %s", summary["kept"], summary["total"],
                 args.keep_ratio, args.out_dir)
    if "caught" in summary:
        logging.info("%d of the %d removed were mislabelled; %d of %d mislabelled utterances kept", summary["caught"],
                     summary["removed"], summary["mislabelled"] - summary["caught"], summary["mislabelled"])
    return 0


if __name__ == "__main__":
    run_main(main)
