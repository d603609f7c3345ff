#!/usr/bin/env python3
"""Usage: reliability.py [options] <xvector.scp> <train-data-dir> <out-dir>

Stage 4: fits the 2-component GMM of within-speaker pair cosines of the
pretrained model's embeddings of <train-data-dir> (its possibly noisy labels)
and writes to <out-dir> what stage 5 needs (the normalised embeddings and the
per-speaker GMMs: w of any pair on the fly) and what a reader wants: report.md
(+ .json), reliability.png, suspected_mislabelled and, with --clean-dir, a data
dir without the suspected utterances; last reliability.settings, the options
and inputs of the fit: a rerun with the same ones is skipped, with others redone. With utt2truespk in the data dir (stage 2)
the report gives pair- and utterance-level detection figures.

The GMM settings (--tol, --n-init, --max-iter, ...) apply to every estimator;
the original work's fit is --estimator sklearn --tol 1e-3 (sklearn's defaults
with n_init 5, max_iter 300, random_state 42).

e.g.: python steps/reliability.py --compare sklearn,bic,global \\
        exp/supcon/embeddings/train/xvector.scp data/train_noisy0.2 exp/supcon/reliability
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from purl.data.datadir import DataDirError, validate_data_dir
from purl.reliability import ESTIMATORS, ReliabilitySettings
from purl.reliability_stage import report_markdown, run_reliability
from purl.settings import differences, read_record, text_digest, write_record
from purl.threads import Background
from purl.vectors import XVECTOR_SETTINGS, load_embeddings


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xvector_scp")
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--estimator", default="histogram", choices=sorted(ESTIMATORS))
    parser.add_argument("--compare", default="", help="comma-separated estimators to fit too, for the report")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--clean-dir", help="write the training dir without the suspected utterances here")
    defaults = ReliabilitySettings()
    for field in dataclasses.fields(ReliabilitySettings):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(defaults, field.name)),
                            default=getattr(defaults, field.name), help=f"GMM setting (default {getattr(defaults, field.name)})")
    return parser


SETTINGS = "reliability.settings"  # in the out dir: what the fit was made from


def gmm_settings(args) -> dict:
    """The ReliabilitySettings fields given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(ReliabilitySettings)}


def stage_settings(args, compare: tuple[str, ...]) -> dict:
    """Options and inputs of a stage-4 run (purl.settings): another --estimator
    or other embeddings or labels make another fit."""
    data = Path(args.data_dir)
    scp = Path(args.xvector_scp)
    record = {"estimator": args.estimator, "compare": sorted(compare), "threshold": args.threshold,
              "clean_dir": args.clean_dir or "", "gmm": gmm_settings(args), "xvector_scp": text_digest(scp),
              "utt2spk": text_digest(data / "utt2spk")}
    if (scp.parent / XVECTOR_SETTINGS).is_file():
        record["embeddings"] = text_digest(scp.parent / XVECTOR_SETTINGS)
    if (data / "utt2truespk").is_file():
        record["utt2truespk"] = text_digest(data / "utt2truespk")
    return record


def main() -> int:
    args = get_parser().parse_args()
    name = Path(sys.argv[0]).name
    compare = tuple(c for c in args.compare.split(",") if c)
    unknown = [c for c in compare if c not in ESTIMATORS]
    if unknown:
        print(f"{name}: unknown estimator(s) {unknown}; choose from {sorted(ESTIMATORS)}", file=sys.stderr)
        return 1
    if not 0 < args.threshold < 1:
        print(f"{name}: --threshold {args.threshold} must be in (0, 1) (a posterior)", file=sys.stderr)
        return 1
    out = Path(args.out_dir)
    try:
        if not Path(args.xvector_scp).is_file():
            raise DataDirError(f"{args.xvector_scp}: no such embedding index (run steps/extract_embeddings.sh first)")
        # Read while the data dir is (numpy's part of it, outside the GIL); not
        # waited for if the stage turns out to be complete.
        embeddings = Background(load_embeddings, args.xvector_scp)
        data = validate_data_dir(args.data_dir, require=("utt2spk", "spk2utt"))
        record = stage_settings(args, compare)
        if (out / "report.json").is_file():
            old = read_record(out / SETTINGS)
            if old is not None and not differences(old, record):
                print(f"{name}: {out}/report.json is complete; skipping (delete it to redo)")
                return 0
            why = "; ".join(differences(old, record)) if old is not None else f"no {out / SETTINGS}"
            print(f"{name}: {out} was made from other settings or inputs ({why}); fitting again")
        (out / SETTINGS).unlink(missing_ok=True)
        report = run_reliability(args.xvector_scp, data, args.out_dir, estimator=args.estimator,
                                 compare=compare, threshold=args.threshold, clean_dir=args.clean_dir,
                                 settings=gmm_settings(args), embeddings=embeddings)
        write_record(out / SETTINGS, record)
    except (DataDirError, ValueError, FileNotFoundError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    print(report_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
