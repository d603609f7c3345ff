#!/usr/bin/env python3
"""Usage: calibrate.py [options] <xvector.scp> <data-dir> <scores-dir>

Stage 6, after steps/score.py: turns the scores of <scores-dir> into
log-likelihood ratios. Fits a linear calibration (logistic regression of target
against non-target, weighted to --p-target) and QMF (the same with quality
measures of both sides: log duration, embedding magnitude, AS-Norm's imposter
mean) per scoring method on a calibration trial list: --dev-trials, or one drawn
(--seed) from --num-speakers speakers of <data-dir> (a training set, whose
utterances <xvector.scp> embeds). Never on an evaluation list: a calibration
utterance in one of the scored lists is an error. The trials are scored as
score.py scored the evaluation lists (the same mean and cohort: its scoring.json).

Writes <scores-dir>/<list>.<method>.{linear,qmf}.llr, calibration_trials,
calibration.json, calibration.md (Cllr, min Cllr, actual DCF beside minDCF at
p_target 0.01 and 0.05), reliability_<list>.png, and the linear calibration of
the cosine into threshold.json (what purl.load_model and `purl compare` decide
with). <scores-dir>/calibration.settings records the inputs: a rerun with the
same ones is skipped.

e.g.: python steps/calibrate.py --results exp/RESULTS.md \\
        exp/m/embeddings/train/xvector.scp data/train exp/m/scores
      python steps/calibrate.py --dev-trials data/vox2_valid/trials \\
        exp/m/embeddings/vox2_valid/xvector.scp data/vox2_valid exp/m/scores
"""

import argparse

from purl.entry import run_main
from purl.stages.calibrate import calibration_table, run_calibration


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xvector_scp", help="embeddings of the calibration utterances")
    parser.add_argument("data_dir", help="their data dir (utt2spk; utt2dur or utt2num_frames for QMF)")
    parser.add_argument("scores_dir", help="what steps/score.py wrote: exp/<model>/scores")
    parser.add_argument("--dev-trials", help="a trial list over <data-dir> to calibrate on, instead of a drawn one")
    parser.add_argument("--num-speakers", type=int, default=200, help="speakers drawn for the calibration trials")
    parser.add_argument("--max-targets", type=int, default=5000, help="target trials drawn (and as many non-targets)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw")
    parser.add_argument("--p-target", type=float, default=0.05, help="the prior the calibrations are fitted at")
    parser.add_argument("--results", help="write this RESULTS.md from every <exp>/*/scores/ table")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    report = run_calibration(args.xvector_scp, args.data_dir, args.scores_dir, dev_trials=args.dev_trials,
                             num_speakers=args.num_speakers, max_targets=args.max_targets, seed=args.seed,
                             p_target=args.p_target, results=args.results)
    print(calibration_table(report, title=args.scores_dir))
    return 0


if __name__ == "__main__":
    run_main(main)
