#!/usr/bin/env python3
"""Usage: relabel_data_dir.py [options] <xvector.scp> <train-data-dir> <out-data-dir>

Stage 5's relabel method: each utterance of <train-data-dir> against the
speakers' core centroids (the --core-ratio of each speaker nearest its plain
centroid) in the stage-4 embeddings. An utterance nearer another speaker's core
than its own by more than --margin moves to that speaker, if its cosine to it is
one that speaker's own utterances have (above their median minus --join-spread
robust standard deviations) and it leads the runner-up speaker (own label
included) by more than --runner-up-margin; one torn between two speakers is
dropped. One that does not move
and whose own speaker is not among its --drop-rank nearest sits with no
training speaker (an outsider) and is dropped. <out-data-dir> holds the new labels and
  proposals     utt old-label new-label margin own-cosine ('-': dropped), largest margin first
  relabel.json  counts, the embeddings that proposed them and, with utt2truespk (stage 2),
                relabel precision and recall
  relabel.settings  what it was made from: a rerun with the same settings is skipped
With --keep-dropped the utterances it would drop stay under their old label and
are listed in <out-data-dir>/unreliable_utts: the relabel_unlearn method trains
PURL on the dir with w = 0 for their pairs (purl.unreliable_utts), so the model
unlearns their wrong label instead of keeping what pretraining learnt from it.

e.g.: steps/relabel_data_dir.py exp/supcon_tuned_noisy0.2_seed0/embeddings/train/xvector.scp \\
        data/train_noisy0.2_seed0 data/train_noisy0.2_seed0_relabelled
"""

import argparse
import logging

from purl.entry import run_main
from purl.relabel import RelabelSettings
from purl.stages.relabel_data_dir import run_relabel

DEFAULTS = RelabelSettings()


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xvector_scp")
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--core-ratio", type=float, default=DEFAULTS.core_ratio,
                        help="fraction of each speaker nearest its centroid that makes its core")
    parser.add_argument("--margin", type=float, default=DEFAULTS.margin,
                        help="cosine lead of another speaker's core over the own one's that moves an utterance")
    parser.add_argument("--join-spread", type=float, default=DEFAULTS.join_spread,
                        help="robust sds below a speaker's median own cosine that an utterance may be and join it")
    parser.add_argument("--runner-up-margin", type=float, default=DEFAULTS.runner_up_margin,
                        help="cosine lead a move needs over the next nearest speaker, own label included; "
                             "less: dropped (0: any lead moves)")
    parser.add_argument("--drop-rank", type=int, default=DEFAULTS.drop_rank,
                        help="drop an utterance that does not move when its own speaker is not among its N nearest "
                             "(0: never drop)")
    parser.add_argument("--keep-dropped", action="store_true",
                        help="keep the utterances it would drop under their old label, listed in unreliable_utts")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    settings = RelabelSettings(core_ratio=args.core_ratio, margin=args.margin, join_spread=args.join_spread,
                                drop_rank=args.drop_rank, runner_up_margin=args.runner_up_margin)
    report = run_relabel(args.xvector_scp, args.data_dir, args.out_dir, settings, keep_dropped=args.keep_dropped)
    if report is None:
        return 0
    logging.info("%s: %d of %d utterances moved, %d dropped", args.out_dir, report["moved"], report["utterances"],
                 report["dropped"])
    if "n_mislabelled" in report:
        logging.info("against utt2truespk: relabel precision %s, recall %s; drop precision %s; "
                     "%d of %d mislabelled left", *(f"{report[k]:.3f}" if report[k] is not None else "-" for k in
                                                    ("relabel_precision", "relabel_recall", "drop_precision")),
                     report["mislabelled_left"], report["n_mislabelled"])
    return 0


if __name__ == "__main__":
    run_main(main)
