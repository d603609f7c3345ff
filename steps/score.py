#!/usr/bin/env python3
"""Usage: score.py [options] <xvector.scp> <scores-dir> <trials> [<trials> ...]

Stage 6: scores trial lists with the cosine of two embeddings (after subtracting
--mean, when given) and with AS-Norm against --cohort (speaker means of a
training set's embeddings, top --top-k per side); writes <scores-dir>/<list>.
{cosine,as-norm}.score, det_<list>.png, results.md and threshold.json (the
cosine EER threshold of the first list and the --mean vector: what
purl.load_model and `purl compare` decide with), prints the table, and with
--results collects every exp/*/scores/results.md into one RESULTS.md.
Scoring takes seconds, so it always runs; <scores-dir>/settings records what
the scores were made from (embeddings, mean, cohort, top-k, trial lists).

e.g.: python steps/score.py --mean exp/m/embeddings/train/mean.vec \\
        --cohort exp/m/embeddings/train/xvector.scp --cohort-utt2spk data/train/utt2spk \\
        --results RESULTS.md exp/m/embeddings/vox1/xvector.scp exp/m/scores \\
        data/vox1/trials_vox1_O data/vox1/trials_vox1_E data/vox1/trials_vox1_H
"""

import argparse
import sys
from pathlib import Path

from purl.data.datadir import DataDirError
from purl.results import cohort_from_embeddings, collect_results, results_table, score_trial_lists
from purl.settings import text_digest, write_record
from purl.vectors import XVECTOR_SETTINGS, read_vector


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


def score_settings(args) -> dict:
    """Digests of every input of the scores (purl.settings), for a reader."""
    scp = Path(args.xvector_scp)
    record = {"xvector_scp": text_digest(scp), "top_k": args.top_k,
              "trials": {t: text_digest(t) for t in args.trials}}
    if (scp.parent / XVECTOR_SETTINGS).is_file():
        record["embeddings"] = text_digest(scp.parent / XVECTOR_SETTINGS)
    for key in ("mean", "cohort", "cohort_utt2spk"):
        if getattr(args, key):
            record[key] = text_digest(getattr(args, key))
    return record


def main() -> int:
    args = get_parser().parse_args()
    name = Path(sys.argv[0]).name
    if bool(args.cohort) != bool(args.cohort_utt2spk):
        print(f"{name}: --cohort and --cohort-utt2spk go together", file=sys.stderr)
        return 1
    try:
        mean = read_vector(args.mean) if args.mean else None
        cohort = cohort_from_embeddings(args.cohort, args.cohort_utt2spk) if args.cohort else None
        results = score_trial_lists(args.xvector_scp, [Path(t) for t in args.trials], args.scores_dir,
                                    mean=mean, cohort=cohort, top_k=args.top_k)
    except (DataDirError, ValueError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    write_record(Path(args.scores_dir) / "settings", score_settings(args))
    print(results_table(results, title=str(Path(args.scores_dir).parent)))
    if args.results:
        collect_results(Path(args.scores_dir).parent.parent, args.results)
        print(f"{name}: updated {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
