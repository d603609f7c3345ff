"""Stage 6: trial scoring (cosine, AS-Norm), metrics, DET plots and result
tables; the layout of exp/<model>/scores/ and of a recipe's exp/RESULTS.md (the
generated tables; the recipe's committed RESULTS.md is written by hand).

exp/<model>/scores/{<list>.<method>.score, det_<list>.png, results.json,
results.md, threshold.json, scoring.json, settings}: ``settings`` (purl.records)
records the inputs the scores were made from; a rerun with the same ones reuses
the scores, with others scores again and says what changed. ``scoring.json``
names those inputs (paths as given), for the calibration step
(purl/stages/calibrate.py) to score its own trials the same way. Every
epoch checkpoint scored (steps/score_epochs.sh): exp/<model>/scores_epochs/
epoch_<N>/ as scores/, and exp/<model>/scores_epochs/{results.md, results.csv,
eer.png} over the epochs.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from purl.data.datadir import DataDirError, read_kv
from purl.evaluate import trial_indices
from purl.fileio import write_text_atomic
from purl.kaldi_io import load_embeddings, read_vector
from purl.metrics import eer_from_points, eer_interpolated_from_points, metrics_from_points, operating_points, plot_det
from purl.plots import plot_eer_per_epoch
from purl.records import text_digest, up_to_date, write_record
from purl.scoring import as_norm, score_trials, speaker_means
from purl.stages.embeddings import XVECTOR_SETTINGS
from purl.stages.exp_layout import TrainingOutputs

log = logging.getLogger(__name__)

SETTINGS = "settings"          # in the scores dir: what the scores were made from, written last
RESULTS_JSON = "results.json"
THRESHOLD_JSON = "threshold.json"
SCORING_INPUTS = "scoring.json"  # the paths score.py was given
CALIBRATION_JSON = "calibration.json"  # written by purl/stages/calibrate.py
CALIBRATION_MD = "calibration.md"
COLUMNS = ("EER (%)", "minDCF(0.01)", "minDCF(0.05)")
# Optional columns of the summary, from calibration.json (linear calibration of the scoring method)
CALIBRATION_COLUMNS = ("Cllr", "actDCF(0.01)", "actDCF(0.05)")
# The original work's EER (the ROC interpolated between operating points), in
# results.json and results.md beside COLUMNS; absent from results made before it.
EER_INTERPOLATED = "EER interp. (%)"


def threshold_file_of(checkpoint: str | os.PathLike) -> Path | None:
    """Stage 6's threshold.json for the run a checkpoint of ``exp/<model>/models/``
    belongs to (``exp/<model>/scores/threshold.json``; recipes score each model
    into its ``scores/``), or None for a checkpoint outside such a run."""
    checkpoint = Path(checkpoint)
    exp_dir = checkpoint.parent.parent
    if checkpoint.parent != TrainingOutputs(exp_dir).models_dir:
        return None
    return exp_dir / "scores" / THRESHOLD_JSON


def list_name(trials: Path) -> str:
    """The name a trial list's outputs carry: trials_vox1_O -> vox1_O, data/test/trials -> test."""
    return trials.name.removeprefix("trials_") if trials.name != "trials" else trials.parent.name


def cohort_from_embeddings(scp: str | os.PathLike, utt2spk: str | os.PathLike) -> np.ndarray:
    """Speaker-mean embeddings (C, D) of a training set: the AS-Norm cohort."""
    return cohort_with_speakers(scp, utt2spk)[1]


def cohort_with_speakers(scp: str | os.PathLike, utt2spk: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(the C speaker ids in row order, their (C, D) mean embeddings): the AS-Norm cohort."""
    utts, emb = load_embeddings(scp)
    spk_of = read_kv(utt2spk)
    missing = next((u for u in utts if u not in spk_of), None)
    if missing is not None:
        raise DataDirError(f"{utt2spk}: no speaker for '{missing}' of {scp}")
    names, speakers = np.unique([spk_of[u] for u in utts], return_inverse=True)
    # Raw scale, like the mean vector that scoring subtracts from both sides.
    return names.tolist(), speaker_means(emb, speakers)


def score_trial_lists(
    emb_scp: str | os.PathLike,
    trial_paths: list[Path],
    out_dir: str | os.PathLike,
    *,
    mean: np.ndarray | None = None,
    cohort: np.ndarray | None = None,
    top_k: int = 300,
) -> dict[str, dict[str, dict[str, float]]]:
    """Scores each trial list with cosine (and AS-Norm with a cohort); writes
    <out>/<list>.<method>.score, <out>/det_<list>.png and <out>/results.md.

    Also writes <out>/threshold.json: the cosine EER threshold of the first
    list and the ``mean`` subtracted before scoring, what ``purl.load_model``
    and ``purl compare`` score with (purl/stages/calibrate.py adds the
    calibration they decide with; a rescoring drops it, as it no longer fits).

    Returns {trial list: {method: {EER (%), minDCF(0.01), minDCF(0.05), EER interp. (%)}}}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    utts, emb = load_embeddings(emb_scp)
    if mean is not None and mean.shape != emb.shape[1:]:
        raise DataDirError(f"mean vector of dimension {mean.shape[0]} for embeddings of dimension {emb.shape[1]} "
                           "(the mean and the embeddings come from different models)")
    index = {u: i for i, u in enumerate(utts)}
    results: dict[str, dict[str, dict[str, float]]] = {}
    thresholds: dict[str, dict[str, float]] = {}
    for path in trial_paths:
        name = list_name(Path(path))
        idx1, idx2, target = trial_indices(path, index)
        if target.all() or not target.any():
            raise DataDirError(f"{path}: has no {'non-target' if target.all() else 'target'} trials; "
                               "EER needs both (check the list)")
        methods = {"cosine": score_trials(emb, idx1, idx2, mean=mean)}
        if cohort is not None:
            methods["as-norm"] = as_norm(methods["cosine"], idx1, idx2, emb, cohort, top_k=top_k, mean=mean)
        curves = {}
        results[name] = {}
        for method, scores in methods.items():
            lines = "".join(f"{utts[a]} {utts[b]} {s:.6f}\n" for a, b, s in zip(idx1, idx2, scores))
            write_text_atomic(out_dir / f"{name}.{method}.score", lines)
            points = operating_points(scores, target)
            metrics = metrics_from_points(points)
            results[name][method] = {
                "EER (%)": 100 * metrics["eer"],
                "minDCF(0.01)": metrics["min_dcf_0.01"],
                "minDCF(0.05)": metrics["min_dcf_0.05"],
                EER_INTERPOLATED: 100 * eer_interpolated_from_points(points),
            }
            eer, threshold = eer_from_points(points)
            curves[f"{method} (EER {100 * eer:.2f}%)"] = (points.p_miss, points.p_fa)
            if method == "cosine":
                thresholds[name] = {"trials": str(path), "eer": eer, "threshold": threshold}
        plot_det(curves, out_dir / f"det_{name}.png", title=f"{name}: {out_dir.parent.name}")
    write_text_atomic(out_dir / RESULTS_JSON, json.dumps(results, indent=1) + "\n")
    write_text_atomic(out_dir / THRESHOLD_JSON, json.dumps(threshold_record(thresholds, mean), indent=1) + "\n")
    write_text_atomic(out_dir / "results.md", results_table(results, title=str(out_dir.parent.name)))
    return results


def threshold_record(thresholds: dict[str, dict], mean: np.ndarray | None) -> dict:
    """What a user of the model decides with: accept a trial when its cosine
    (after subtracting ``mean``) is at least the EER threshold of the first
    trial list; the other lists' thresholds for reference."""
    first = next(iter(thresholds.values()))
    return {
        "threshold": first["threshold"],
        "eer": first["eer"],
        "trials": first["trials"],
        "method": "cosine",
        "rule": "accept when cosine(a - mean, b - mean) >= threshold",
        "mean": None if mean is None else [float(v) for v in mean],
        "lists": thresholds,
    }


def results_table(results: dict[str, dict[str, dict[str, float]]], title: str = "") -> str:
    """A markdown table: a row per (trial list, method)."""
    lines = [f"## {title}\n"] if title else []
    columns = COLUMNS + (EER_INTERPOLATED,)
    lines += ["| trials | scoring | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
    for trials, methods in results.items():
        for method, metrics in methods.items():
            interpolated = f"{metrics[EER_INTERPOLATED]:.2f}" if EER_INTERPOLATED in metrics else "-"
            lines.append(f"| {trials} | {method} | {metrics['EER (%)']:.2f} | "
                         f"{metrics['minDCF(0.01)']:.4f} | {metrics['minDCF(0.05)']:.4f} | {interpolated} |")
    return "\n".join(lines) + "\n"


def collect_results(exp_root: str | os.PathLike, out: str | os.PathLike) -> str:
    """RESULTS.md: every exp/<model>/scores/results.md of a recipe, one table each,
    each followed by the model's calibration.md where steps/calibrate.py wrote one."""
    exp_root = Path(exp_root)
    parts = ["# Results\n", "Every scored model of this recipe (steps/score.py writes each "
             "exp/<model>/scores/results.md; EER in %, minDCF with C_miss = C_fa = 1).\n"]
    for path in sorted(exp_root.glob("*/scores/results.md")):
        parts.append(path.read_text())
        if (path.parent / CALIBRATION_MD).is_file():
            parts.append((path.parent / CALIBRATION_MD).read_text())
    text = "\n".join(parts)
    write_text_atomic(out, text)
    return text


def summary_rows(rows: list[tuple[str, Path]], scoring: str = "cosine") -> list[dict]:
    """Per (label, exp dir): {label, exp, and the COLUMNS of its first trial list},
    plus the CALIBRATION_COLUMNS of its linear calibration where the model has
    a calibration.json."""
    out = []
    for label, exp_dir in rows:
        path = Path(exp_dir) / "scores" / RESULTS_JSON
        if not path.is_file():
            raise DataDirError(f"{path}: missing (run stage 6 for {exp_dir})")
        results = json.loads(path.read_text())
        first, methods = next(iter(results.items()))
        metrics = methods[scoring]
        row = {"label": label, "exp": str(exp_dir), **{c: metrics[c] for c in COLUMNS}}
        calibration = path.parent / CALIBRATION_JSON
        if calibration.is_file():
            linear = json.loads(calibration.read_text())["results"].get(first, {}).get(scoring, {}).get("linear")
            row.update({c: linear[c] for c in CALIBRATION_COLUMNS} if linear else {})
        out.append(row)
    return out


def summary_table(rows: list[tuple[str, Path]], reliability_report: Path | None = None,
                  scoring: str = "cosine") -> str:
    """One table over models: a row per (label, exp dir), EER and minDCF of its
    first trial list, then (where any model is calibrated) Cllr and the actual
    DCF of its linear calibration; then the reliability stage's detection metrics."""
    table = summary_rows(rows, scoring)
    columns = COLUMNS + (CALIBRATION_COLUMNS if any(CALIBRATION_COLUMNS[0] in row for row in table) else ())
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for row in table:
        lines.append(f"| {row['label']} | " + " | ".join(
            "-" if c not in row else f"{row[c]:.2f}" if c.startswith("EER") else f"{row[c]:.4f}"
            for c in columns) + " |")
    text = "\n".join(lines) + "\n"
    if reliability_report is not None and Path(reliability_report).is_file():
        report = json.loads(Path(reliability_report).read_text())
        detection = report.get("detection", {})
        if "pair_auc" in detection:
            text += (f"\nReliability (stage 4, {report.get('estimator', '?')}): noisy-pair detection AUC "
                     f"{detection['pair_auc']:.3f}, F1 {detection['pair_f1']:.3f} at w < 0.5; "
                     f"mislabelled-utterance AUC {detection.get('utt_auc', float('nan')):.3f}, "
                     f"F1 {detection.get('utt_f1', float('nan')):.3f}\n")
    return text


def score_settings(xvector_scp: str | os.PathLike, trials: list[str | os.PathLike], top_k: int,
                   mean: str | os.PathLike | None = None, cohort: str | os.PathLike | None = None,
                   cohort_utt2spk: str | os.PathLike | None = None) -> dict:
    """Digests of every input of the scores (purl.records)."""
    scp = Path(xvector_scp)
    record = {"xvector_scp": text_digest(scp), "top_k": top_k,
              "trials": {str(t): text_digest(t) for t in trials}}
    if (scp.parent / XVECTOR_SETTINGS).is_file():
        record["embeddings"] = text_digest(scp.parent / XVECTOR_SETTINGS)
    for key, path in (("mean", mean), ("cohort", cohort), ("cohort_utt2spk", cohort_utt2spk)):
        if path:
            record[key] = text_digest(path)
    return record


def run_scoring(xvector_scp: str | os.PathLike, scores_dir: str | os.PathLike, trials: list[str | os.PathLike], *,
                mean: str | os.PathLike | None = None, cohort: str | os.PathLike | None = None,
                cohort_utt2spk: str | os.PathLike | None = None, top_k: int = 300,
                results: str | os.PathLike | None = None) -> dict:
    """Stage 6 for one model with its skip check: the results of
    :func:`score_trial_lists`, made now or by an earlier run with the same
    inputs; with ``results``, every exp/*/scores/results.md collected there."""
    scores_dir = Path(scores_dir)
    record = score_settings(xvector_scp, trials, top_k, mean, cohort, cohort_utt2spk)
    inputs = {"xvector_scp": str(xvector_scp), "trials": [str(t) for t in trials], "mean": str(mean) if mean else None,
              "cohort": str(cohort) if cohort else None,
              "cohort_utt2spk": str(cohort_utt2spk) if cohort_utt2spk else None, "top_k": top_k}
    if up_to_date(scores_dir / SETTINGS, record, scores_dir, complete=(scores_dir / RESULTS_JSON).is_file()):
        scored = json.loads((scores_dir / RESULTS_JSON).read_text(encoding="utf-8"))
    else:
        mean_vector = read_vector(mean) if mean else None
        cohort_means = cohort_from_embeddings(cohort, cohort_utt2spk) if cohort else None
        scored = score_trial_lists(xvector_scp, [Path(t) for t in trials], scores_dir,
                                   mean=mean_vector, cohort=cohort_means, top_k=top_k)
        write_record(scores_dir / SETTINGS, record)
    write_text_atomic(scores_dir / SCORING_INPUTS, json.dumps(inputs, indent=1) + "\n")
    if results:
        collect_results(scores_dir.parent.parent, results)
        log.info("updated %s", results)
    return scored


def read_scoring_inputs(scores_dir: str | os.PathLike) -> dict:
    """What steps/score.py scored a scores dir from (its scoring.json)."""
    path = Path(scores_dir) / SCORING_INPUTS
    if not path.is_file():
        raise DataDirError(f"{path}: missing (run steps/score.py for this model first; a scores dir of an "
                           "older version has none: rerunning score.py writes it without scoring again)")
    return json.loads(path.read_text(encoding="utf-8"))


EPOCH_SCORES = "scores_epochs"  # in exp/<model>/: epoch_<N>/ per epoch, and the tables over them
_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


def epoch_results(exp_dir: str | os.PathLike, scoring: str = "cosine") -> str:
    """The table over exp/<model>/scores_epochs/epoch_<N>/results.json: a row per
    (epoch, trial list) with COLUMNS and the interpolated EER; writes it as
    results.md and results.csv beside them, and eer.png (EER per epoch, a line
    per trial list). Returns the markdown."""
    root = Path(exp_dir) / EPOCH_SCORES
    epochs = sorted((int(m[1]), path) for path in root.glob("epoch_*")
                    if (m := _EPOCH_DIR.match(path.name)) and (path / RESULTS_JSON).is_file())
    if not epochs:
        raise DataDirError(f"{root}: no epoch_<N>/{RESULTS_JSON} (run steps/score_epochs.sh first)")
    columns = ("epoch", "trials") + COLUMNS + (EER_INTERPOLATED,)
    rows = []
    for epoch, path in epochs:
        for trials, methods in json.loads((path / RESULTS_JSON).read_text(encoding="utf-8")).items():
            rows.append({"epoch": epoch, "trials": trials, **{c: methods[scoring].get(c) for c in columns[2:]}})
    lines = [f"## {Path(exp_dir).name}: every epoch ({scoring} scoring)\n",
             "| " + " | ".join(columns) + " |", "|---:|---|" + "---:|" * (len(columns) - 2)]
    for row in rows:
        lines.append(f"| {row['epoch']} | {row['trials']} | " + " | ".join(
            "-" if row[c] is None else f"{row[c]:.2f}" if c.startswith("EER") else f"{row[c]:.4f}"
            for c in columns[2:]) + " |")
    text = "\n".join(lines) + "\n"
    write_text_atomic(root / "results.md", text)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(root / "results.csv", table.getvalue())
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        epochs_of, eers = curves.setdefault(row["trials"], ([], []))
        epochs_of.append(row["epoch"])
        eers.append(row["EER (%)"])
    plot_eer_per_epoch(curves, root / "eer.png", title=f"{Path(exp_dir).name}: EER per epoch ({scoring})")
    return text
