#!/usr/bin/env python3
"""Usage: summarize.py [--reliability-report FILE] [--scoring cosine|as-norm] <label>=<exp-dir> ...

The table that tells the PURL story of one run: a row per model (EER and minDCF
on its first trial list, from stage 6's results.json), then the noisy-pair
detection figures of stage 4. Prints markdown.

e.g.: steps/summarize.py --reliability-report exp/supcon_noisy/reliability/report.json \\
        "clean SupCon=exp/supcon_clean" "noisy SupCon=exp/supcon_noisy" \\
        "noisy + control=exp/control" "noisy + PURL=exp/purl"
"""

import argparse
from pathlib import Path

from purl.entry import run_main
from purl.errors import UsageError
from purl.stages.scoring import summary_table


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="+", metavar="LABEL=EXP_DIR")
    parser.add_argument("--reliability-report")
    parser.add_argument("--scoring", default="cosine", choices=("cosine", "as-norm"))
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
    return 0


if __name__ == "__main__":
    run_main(main)
