#!/usr/bin/env python3
"""Usage: reliability.py [options] <xvector.scp> <train-data-dir> <out-dir>

Stage 4: fits the 2-component GMM of within-speaker pair cosines of the
pretrained model's embeddings of <train-data-dir> (its possibly noisy labels)
and writes to <out-dir> what stage 5 needs (the normalised embeddings and the
per-speaker GMMs: w of any pair on the fly) and what a reader wants: report.md
(+ .json), reliability.png, suspected_mislabelled and, with --clean-dir, a data
dir without the suspected utterances; last reliability.settings, the options
and inputs of the fit: a rerun with the same ones is skipped, with others
redone. With utt2truespk in the data dir (stage 2) the report gives pair- and
utterance-level detection metrics.

Settings: the ``reliability:`` section of --config (a recipe's
conf/tuned/reliability.yaml), then --overrides, then the options below, which
override both. The GMM settings (tol, n_init, max_iter, ...) apply to every
estimator; the original work's fit is estimator sklearn, tol 1e-3 (sklearn's
defaults with n_init 5, max_iter 300, random_state 42). Its per-speaker fits
run in --nj processes (default: the cores this process may use), each with
one BLAS and one OpenMP thread; the outputs are the same for any --nj, which
is therefore not part of reliability.settings.

e.g.: python steps/reliability.py --config conf/tuned/reliability.yaml --overrides "reliability.tol=1e-3" --nj 16 \\
        exp/supcon/embeddings/train/xvector.scp data/train_noisy0.2 exp/supcon/reliability
"""

import argparse
import dataclasses

from purl.entry import run_main
from purl.errors import UsageError
from purl.processes import usable_cores
from purl.reliability import ESTIMATORS, ReliabilitySettings
from purl.stages.reliability import load_reliability_config, report_markdown, run_stage


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xvector_scp")
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--config", help="YAML with a 'reliability:' section (e.g. conf/tuned/reliability.yaml)")
    parser.add_argument("--overrides", default="", metavar="'reliability.KEY=VALUE ...'",
                        help="space-separated overrides of the config's keys")
    parser.add_argument("--estimator", choices=sorted(ESTIMATORS))
    parser.add_argument("--compare", help="comma-separated estimators to fit too, for the report")
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--clean-dir", help="write the training dir without the suspected utterances here")
    parser.add_argument("--nj", type=int, default=usable_cores(),
                        help="processes of the sklearn estimator's per-speaker fits (default: the cores this "
                             "process may use, %(default)s here)")
    for field in dataclasses.fields(ReliabilitySettings):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default),
                            help=f"GMM setting (default {field.default})")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    if args.nj < 1:
        raise UsageError(f"--nj {args.nj}: give at least 1 process")
    # Options given on the command line override the config file's keys.
    keys = {"estimator", "compare", "threshold"} | {f.name for f in dataclasses.fields(ReliabilitySettings)}
    given = [f"reliability.{key}={value}" for key, value in vars(args).items() if key in keys and value is not None]
    config = load_reliability_config(args.config, args.overrides.split() + given)
    report = run_stage(args.xvector_scp, args.data_dir, args.out_dir, config, args.clean_dir, nj=args.nj)
    print(report_markdown(report))
    return 0


if __name__ == "__main__":
    run_main(main)
