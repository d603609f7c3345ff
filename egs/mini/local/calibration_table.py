#!/usr/bin/env python3
"""Usage: calibration_table.py [options] <summary.json>...

What stage 6's calibration gives each model of the summary tables, over seeds:
for every row of the summaries (steps/summarize.py --json; one summary per
seed, rows matched by their label), the first trial list's EER and minDCF,
and the Cllr and actual DCF of the raw cosine taken as an LLR (what a score
meant before calibration), of its linear calibration and of its QMF
calibration, beside the min Cllr that no monotone map of the scores can beat.
Run in the recipe's dir; reads each model's scores/ (the cosine scores and the .llr files that
steps/calibrate.py wrote); prints markdown, mean ± sd over the summaries.

e.g.: local/calibration_table.py exp/summary_tuned_noisy0.2_seed0.json exp/summary_tuned_noisy0.2_seed1.json
"""

import argparse
import json
from pathlib import Path

import numpy as np

from purl.data.datadir import read_trials
from purl.entry import run_main
from purl.errors import UsageError
from purl.stages.calibrate import CALIBRATION_JSON, P_TARGETS, llr_metrics, read_score_file
from purl.stages.score import read_scoring_inputs

KINDS = ("raw", "linear", "qmf")  # the cosine as it is, then its two calibrations


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summaries", nargs="+", help="steps/summarize.py --json files, one per seed")
    parser.add_argument("--method", default="cosine", help="the scoring method of score.py (cosine, as-norm)")
    parser.add_argument("--p-target", type=float, default=P_TARGETS[1], choices=P_TARGETS,
                        help="the prior of the DCF columns")
    return parser


def model_metrics(recipe: Path, exp: str, method: str) -> dict[str, dict[str, float]]:
    """kind -> metrics of the model's first calibrated trial list."""
    scores = recipe / exp / "scores"
    path = scores / CALIBRATION_JSON
    if not path.is_file():
        raise UsageError(f"{path}: missing (run stage 6 with steps/calibrate.py for {exp})")
    report = json.loads(path.read_text(encoding="utf-8"))
    name, by_method = next(iter(report["results"].items()))
    trials_path = Path(read_scoring_inputs(scores)["trials"][0])
    if not trials_path.is_absolute():
        trials_path = recipe / trials_path
    trials = read_trials(trials_path)
    raw = read_score_file(scores / f"{name}.{method}.score", trials)
    labels = np.array([t for _, _, t in trials])
    return {"raw": llr_metrics(raw, labels), **by_method[method]}


def cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def main() -> int:
    args = get_parser().parse_args()
    per_label: dict[str, list[dict]] = {}
    for summary in map(Path, args.summaries):
        recipe = Path.cwd()  # the summaries' exp dirs are relative to the recipe's dir
        for row in json.loads(summary.read_text(encoding="utf-8"))["rows"]:
            per_label.setdefault(row["label"], []).append(model_metrics(recipe, row["exp"], args.method))
    p = args.p_target
    print(f"{len(args.summaries)} summaries ({', '.join(Path(s).name for s in args.summaries)}), "
          f"{args.method} scores; DCFs at p_target {p:g}; raw: the score taken as an LLR; qmf: its own ranking "
          "of the trials, hence its own EER, minDCF and min Cllr\n")
    columns = (["EER (%)", "EER qmf", f"minDCF({p:g})", f"minDCF({p:g}) qmf"]
               + [f"actDCF({p:g}) {k}" for k in KINDS] + [f"Cllr {k}" for k in KINDS] + ["min Cllr", "min Cllr qmf"])
    print("| model | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for label, runs in per_label.items():
        def values(kind, key, runs=runs):
            return [r[kind][key] for r in runs if kind in r]
        row = [cell(values(k, "EER (%)"), 2) for k in ("raw", "qmf")]
        row += [cell(values(k, f"minDCF({p:g})"), 3) for k in ("raw", "qmf")]
        row += [cell(values(k, f"actDCF({p:g})"), 3) for k in KINDS] + [cell(values(k, "Cllr"), 3) for k in KINDS]
        row += [cell(values(k, "min Cllr"), 3) for k in ("raw", "qmf")]
        print(f"| {label} | " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    run_main(main)
