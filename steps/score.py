#!/usr/bin/env python3
"""Usage: score.py [options] <xvector.scp> <scores-dir> <trials> [<trials> ...]

Stage 6: scores trial lists with the cosine of two embeddings (after subtracting
--mean, when given) and with AS-Norm against --cohort (speaker means of a
training set's embeddings, top --top-k per side); writes <scores-dir>/<list>.
{cosine,as-norm}.score, det_<list>.png, results.md and threshold.json (the
cosine EER threshold of the first list and the --mean vector, what
purl.load_model and `purl compare` score with; steps/calibrate.py adds the
calibration they decide with), prints the table, and with --results collects
every exp/*/scores/results.md into one file (recipes: exp/RESULTS.md).
<scores-dir>/settings records what the scores were made from (embeddings,
mean, cohort, top-k, trial lists): a rerun from the same inputs reuses them;
<scores-dir>/scoring.json names those inputs for steps/calibrate.py.

e.g.: python steps/score.py --mean exp/m/embeddings/train/mean.vec \\
        --cohort exp/m/embeddings/train/xvector.scp --cohort-utt2spk data/train/utt2spk \\
        --results exp/RESULTS.md exp/m/embeddings/vox1/xvector.scp exp/m/scores \\
        data/vox1/trials_vox1_O data/vox1/trials_vox1_E data/vox1/trials_vox1_H
"""

import argparse
from pathlib import Path

from purl.entry import run_main
from purl.errors import UsageError
from purl.stages.score import results_table, run_scoring


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xvector_scp")
    parser.add_argument("scores_dir")
    parser.add_argument("trials", nargs="+")
    parser.add_argument("--mean", help="Kaldi text vector to subtract before scoring")
    parser.add_argument("--cohort", help="xvector.scp of the training set: AS-Norm cohort")
    parser.add_argument("--cohort-utt2spk", help="utt2spk of the cohort's data dir")
    parser.add_argument("--top-k", type=int, default=300)
    parser.add_argument("--results", help="write this RESULTS.md from every <exp>/*/scores/results.md")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    if bool(args.cohort) != bool(args.cohort_utt2spk):
        raise UsageError("--cohort and --cohort-utt2spk go together")
    results = run_scoring(args.xvector_scp, args.scores_dir, args.trials, mean=args.mean, cohort=args.cohort,
                          cohort_utt2spk=args.cohort_utt2spk, top_k=args.top_k, results=args.results)
    print(results_table(results, title=str(Path(args.scores_dir).parent)))
    return 0


if __name__ == "__main__":
    run_main(main)
