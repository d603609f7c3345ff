#!/usr/bin/env python3
"""Usage: summarize.py [options] <label>=<exp-dir> ...

The table that tells the PURL story of one run: a row per model (EER and minDCF
on its first trial list, from stage 6's results.json; then Cllr and the actual
DCF of its linear calibration where steps/calibrate.py made calibration.json),
then the noisy-pair detection metrics of stage 4. Prints markdown. --json FILE also writes the rows,
the stage-4 report, the relabel report (--relabel-report) and the regroup report
(--regroup-report) as JSON, for tables over runs (local/noise_benchmark.sh).

e.g.: steps/summarize.py --reliability-report exp/supcon_noisy/reliability/report.json \\
        "clean SupCon=exp/supcon_clean" "noisy SupCon=exp/supcon_noisy" \\
        "noisy + control=exp/control" "noisy + PURL=exp/purl"
"""

import argparse
import json
from pathlib import Path

from purl.entry import run_main
from purl.errors import UsageError
from purl.fileio import write_text_atomic
from purl.stages.score import summary_rows, summary_table


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="+", metavar="LABEL=EXP_DIR")
    parser.add_argument("--reliability-report")
    parser.add_argument("--scoring", default="cosine", choices=("cosine", "as-norm"))
    parser.add_argument("--relabel-report", help="the relabel method's relabel.json, for --json")
    parser.add_argument("--regroup-report", help="the regroup method's regroup.json, for --json")
    parser.add_argument("--json", help="also write the rows and reports here")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    rows = []
    for row in args.rows:
        if "=" not in row:
            raise UsageError(f"'{row}' is not LABEL=EXP_DIR")
        label, exp_dir = row.split("=", 1)
        rows.append((label, Path(exp_dir)))
    print(summary_table(rows, Path(args.reliability_report) if args.reliability_report else None, args.scoring))
    if args.json:
        reports = {name: json.loads(Path(path).read_text()) for name, path in
                   (("reliability", args.reliability_report), ("relabel", args.relabel_report),
                    ("regroup", args.regroup_report))
                   if path and Path(path).is_file()}
        write_text_atomic(args.json, json.dumps({"rows": summary_rows(rows, args.scoring), **reports}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
