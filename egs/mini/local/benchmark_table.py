#!/usr/bin/env python3
"""Usage: benchmark_table.py [options] <work-dir>

The noisy-label benchmark's table and figure (local/noise_benchmark.sh calls it
when its cells are done): reads <work-dir>/exp/summary<tag>_<noise><rate>_seed<seed>.json
of every cell and writes <work-dir>/RESULTS.md, <work-dir>/eer_vs_rate.png and
<work-dir>/benchmark.json. A cell not run yet (or failed) is named in RESULTS.md
and its numbers are '–': the tables of a grid that is still running.

e.g.: local/benchmark_table.py --seeds "0 1" --rates "0 0.2" --noise-types "permute open" exp/benchmark
"""

import argparse
import subprocess

from purl.entry import run_main
from purl.errors import UsageError
from purl.label_noise import NOISE_TYPES
from purl.stages.benchmark import write_benchmark


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work_dir")
    parser.add_argument("--seeds", default="0", help="space-separated seeds")
    parser.add_argument("--rates", default="0 0.1 0.2 0.4", help="space-separated noise rates")
    parser.add_argument("--noise-types", default="permute similar open")
    parser.add_argument("--methods", default="control filter purl relabel relabel_retrain orgate",
                        help="run.sh's --methods (default: local/noise_benchmark.sh's)")
    parser.add_argument("--tag", default="_tuned", help="run.sh's protocol in names: '_tuned' or '_paper'")
    return parser


def main() -> int:
    args = get_parser().parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split()]
        rates = sorted({float(r) for r in args.rates.split()})
    except ValueError as e:
        raise UsageError(f"--seeds and --rates take space-separated numbers: {e}") from None
    noise_types = args.noise_types.split()
    unknown = [t for t in noise_types if t not in NOISE_TYPES]
    if unknown:
        raise UsageError(f"--noise-types: '{unknown[0]}' is not one of {', '.join(NOISE_TYPES)}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    header = (f"# Noisy-label benchmark\n\nCommit {commit or 'unknown'}; seeds {', '.join(map(str, seeds))}; "
              f"methods from the same pretrained model per cell: {args.methods}.")
    print(write_benchmark(args.work_dir, seeds, rates, noise_types, args.methods.split(), args.tag, header))
    return 0


if __name__ == "__main__":
    run_main(main)
