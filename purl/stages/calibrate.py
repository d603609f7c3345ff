"""Stage 6, calibration: a model's scores turned into log-likelihood ratios,
fitted on a calibration trial list that is never an evaluation list.

After steps/score.py, for the scores dir it wrote (its scoring.json names the
embeddings, mean, cohort and trial lists it scored from):

1. The calibration trials: a named dev list, or a list drawn (seeded) from
   ``num_speakers`` speakers of a training data dir (purl.calibration.
   held_out_trials), scored as the evaluation lists were: the same mean, the
   same AS-Norm cohort, except that an utterance's own speaker is left out of
   its cohort statistics (it was a cohort speaker; a test speaker is not).
2. Per scoring method (cosine, and AS-Norm where scored), two calibrations
   fitted at the prior ``p_target``: ``linear`` (the score) and ``qmf`` (the
   score and the quality measures of both sides: log duration, embedding
   magnitude, imposter mean; a measure that is constant on the calibration
   trials is left out and the record says so).
3. Every evaluation list's score files mapped to LLRs and judged: Cllr,
   min Cllr, actual DCF beside minDCF at p_target 0.01 and 0.05, EER.

exp/<model>/scores/{<list>.<method>.<linear|qmf>.llr, calibration_trials,
calibration.json, calibration.md, reliability_<list>.png,
calibration.settings}; threshold.json gains a ``calibration`` entry (the linear
calibration of the cosine: what purl.load_model decides with).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from purl.calibration import (
    CalibrationError,
    LinearCalibration,
    fit_linear,
    held_out_trials,
    qmf_features,
    utterance_measures,
)
from purl.data.datadir import DataDir, DataDirError, read_kv, read_trials, write_trials
from purl.fileio import write_text_atomic
from purl.kaldi_io import load_embeddings, read_vector
from purl.metrics import (
    actual_dcf,
    bayes_threshold,
    cllr,
    metrics_from_points,
    min_cllr,
    operating_points,
)
from purl.plots import plot_reliability
from purl.records import text_digest, up_to_date, write_record
from purl.scoring import as_norm, score_trials
from purl.stages.embeddings import XVECTOR_SETTINGS
from purl.stages.exp_layout import TrainingOutputs
from purl.stages.score import (
    CALIBRATION_JSON,
    CALIBRATION_MD,
    SETTINGS,
    THRESHOLD_JSON,
    cohort_with_speakers,
    collect_results,
    list_name,
    read_scoring_inputs,
)
from purl.training.checkpoint import load_checkpoint, save_atomic

log = logging.getLogger(__name__)

CALIBRATION_SETTINGS = "calibration.settings"
CALIBRATION_TRIALS = "calibration_trials"
KINDS = ("linear", "qmf")
P_TARGETS = (0.01, 0.05)
COLUMNS = ("EER (%)", "minDCF(0.01)", "actDCF(0.01)", "minDCF(0.05)", "actDCF(0.05)", "min Cllr", "Cllr")
FRAME_SHIFT = 0.01  # seconds per frame of utt2num_frames (stage 1's 10 ms)
MODELS_FILE = "enroll_avg"  # enrollment models of several utterances beside a trial list (CN-Celeb)


def durations_of(data_dir: Path) -> dict[str, float] | None:
    """Seconds per utterance of a data dir: utt2dur, else utt2num_frames x 10 ms;
    an enrollment model of ``enroll_avg`` lasts as long as its utterances
    together. None when the dir has neither file."""
    data = DataDir(data_dir)
    if data.has("utt2dur"):
        seconds = {u: float(v) for u, v in data.table("utt2dur").items()}
    elif data.has("utt2num_frames"):
        seconds = {u: FRAME_SHIFT * int(v) for u, v in data.table("utt2num_frames").items()}
    else:
        return None
    if data.has(MODELS_FILE):
        for model, utts in read_kv(data.path / MODELS_FILE, multi=True).items():
            if all(u in seconds for u in utts):
                seconds[model] = sum(seconds[u] for u in utts)
    return seconds


def _duration_files(data_dir: Path) -> dict[str, str]:
    return {str(data_dir / n): text_digest(data_dir / n) for n in ("utt2dur", "utt2num_frames", MODELS_FILE)
            if (data_dir / n).is_file()}


def _trial_arrays(trials, index: dict[str, int], source) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx1, idx2, target = np.empty(len(trials), np.int64), np.empty(len(trials), np.int64), np.empty(len(trials), bool)
    for n, (a, b, t) in enumerate(trials):
        for u in (a, b):
            if u not in index:
                raise DataDirError(f"{source} trial {n + 1}: no embedding for '{u}' (embed the data dir the "
                                   "calibration trials are drawn from)")
        idx1[n], idx2[n], target[n] = index[a], index[b], t
    return idx1, idx2, target


def read_score_file(path: Path, trials: list[tuple[str, str, bool]]) -> np.ndarray:
    """The scores of ``path`` (``enroll test score`` lines, steps/score.py's), checked
    against the trial list they were scored from, line by line."""
    scores = np.empty(len(trials))
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if len(lines) != len(trials):
        raise DataDirError(f"{path}: {len(lines)} scores for {len(trials)} trials (rerun steps/score.py)")
    for n, (line, (a, b, _)) in enumerate(zip(lines, trials)):
        parts = line.split()
        if len(parts) != 3 or parts[0] != a or parts[1] != b:
            raise DataDirError(f"{path} line {n + 1}: '{line}' is not the score of trial '{a} {b}' "
                               "(rerun steps/score.py)")
        scores[n] = float(parts[2])
    return scores


def llr_metrics(llr: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """EER, minDCF and the actual DCF at P_TARGETS, Cllr and min Cllr of LLRs."""
    metrics = metrics_from_points(operating_points(llr, target), p_targets=P_TARGETS)
    out = {"EER (%)": 100 * metrics["eer"]}
    for p in P_TARGETS:
        out[f"minDCF({p:g})"] = metrics[f"min_dcf_{p:g}"]
        out[f"actDCF({p:g})"] = actual_dcf(llr, target, p)
    out["min Cllr"] = min_cllr(llr, target)
    out["Cllr"] = cllr(llr, target)
    return out


class Scorer:
    """Scores trials and measures utterances as steps/score.py scored the
    evaluation lists: the mean it subtracted, the cohort and top-k of its AS-Norm."""

    def __init__(self, inputs: dict):
        self.mean = read_vector(inputs["mean"]) if inputs.get("mean") else None
        self.top_k = int(inputs["top_k"])
        self.cohort_speakers, self.cohort = (None, None)
        if inputs.get("cohort"):
            self.cohort_speakers, self.cohort = cohort_with_speakers(inputs["cohort"], inputs["cohort_utt2spk"])

    def methods(self) -> tuple[str, ...]:
        return ("cosine",) if self.cohort is None else ("cosine", "as-norm")

    def own_cohort_rows(self, utts: list[str], utt2spk: dict[str, str]) -> np.ndarray | None:
        """Per utterance, the cohort row of its speaker (-1 for a speaker not in the cohort)."""
        if self.cohort is None:
            return None
        row = {s: i for i, s in enumerate(self.cohort_speakers)}
        return np.array([row.get(utt2spk.get(u, ""), -1) for u in utts])

    def score(self, emb, idx1, idx2, exclude=None) -> dict[str, np.ndarray]:
        scores = {"cosine": score_trials(emb, idx1, idx2, mean=self.mean)}
        if self.cohort is not None:
            scores["as-norm"] = as_norm(scores["cosine"], idx1, idx2, emb, self.cohort, top_k=self.top_k,
                                        mean=self.mean, cohort_exclude=exclude)
        return scores

    def measures(self, emb, rows, durations, exclude=None) -> tuple[np.ndarray, tuple[str, ...]]:
        """Quality measures (len(rows), Q) of emb[rows]; ``durations``: seconds of each row or None."""
        return utterance_measures(emb[rows], mean=self.mean, durations=durations, cohort=self.cohort,
                                  top_k=self.top_k, exclude=None if exclude is None else exclude[rows])


def calibration_settings(xvector_scp, data_dir, scores_dir: Path, inputs: dict, dev_trials, options: dict) -> dict:
    """Digests of every input of the calibration (purl.records)."""
    scp = Path(xvector_scp)
    record = {"xvector_scp": text_digest(scp), "utt2spk": text_digest(Path(data_dir) / "utt2spk"),
              "durations": _duration_files(Path(data_dir)), "scoring": text_digest(scores_dir / SETTINGS), **options}
    if (scp.parent / XVECTOR_SETTINGS).is_file():
        record["embeddings"] = text_digest(scp.parent / XVECTOR_SETTINGS)
    if dev_trials:
        record["dev_trials"] = text_digest(dev_trials)
    record["score_files"] = {p.name: text_digest(p) for p in sorted(scores_dir.glob("*.score"))}
    record["eval_durations"] = {k: v for t in inputs["trials"] for k, v in _duration_files(Path(t).parent).items()}
    return record


def run_calibration(xvector_scp: str | os.PathLike, data_dir: str | os.PathLike, scores_dir: str | os.PathLike, *,
                    dev_trials: str | os.PathLike | None = None, num_speakers: int = 200, max_targets: int = 5000,
                    seed: int = 0, p_target: float = 0.05, results: str | os.PathLike | None = None) -> dict:
    """Calibrates the scores of ``scores_dir`` (see the module docstring) on trials
    of the utterances of ``data_dir`` embedded in ``xvector_scp``: ``dev_trials``,
    or ``num_speakers`` of its speakers drawn with ``seed``. Skips when
    calibration.settings records the same inputs; with ``results``, collects
    every exp/*/scores/ table there. Returns the contents of calibration.json."""
    scores_dir, data_dir = Path(scores_dir), Path(data_dir)
    inputs = read_scoring_inputs(scores_dir)
    options = {"num_speakers": num_speakers, "max_targets": max_targets, "seed": seed, "p_target": p_target}
    record = calibration_settings(xvector_scp, data_dir, scores_dir, inputs, dev_trials, options)
    threshold_path = scores_dir / THRESHOLD_JSON
    complete = ((scores_dir / CALIBRATION_JSON).is_file() and threshold_path.is_file()
                and "calibration" in json.loads(threshold_path.read_text(encoding="utf-8")))
    if up_to_date(scores_dir / CALIBRATION_SETTINGS, record, scores_dir / CALIBRATION_JSON, complete=complete):
        report = json.loads((scores_dir / CALIBRATION_JSON).read_text(encoding="utf-8"))
    else:
        report = calibrate(xvector_scp, data_dir, scores_dir, inputs, dev_trials=dev_trials,
                           num_speakers=num_speakers, max_targets=max_targets, seed=seed, p_target=p_target)
        write_record(scores_dir / CALIBRATION_SETTINGS, record)
    write_scoring_checkpoint(scores_dir)
    if results:
        collect_results(scores_dir.parent.parent, results)
        log.info("updated %s", results)
    return report


def calibration_trials(utts: list[str], data_dir: Path, eval_lists: list[Path], *, dev_trials, num_speakers,
                       max_targets, seed) -> tuple[list[tuple[str, str, bool]], str]:
    """(trials, what they are): the dev list, or a draw of the data dir's speakers;
    refused when one of its utterances is in an evaluation list."""
    if dev_trials:
        if any(Path(dev_trials).resolve() == t.resolve() for t in eval_lists):
            raise CalibrationError(f"{dev_trials} is an evaluation list of this model: calibrate on another list")
        trials, source = read_trials(dev_trials), str(dev_trials)
    else:
        embedded = set(utts)
        utt2spk = {u: s for u, s in DataDir(data_dir).utt2spk.items() if u in embedded}
        trials, speakers = held_out_trials(utt2spk, num_speakers, max_targets=max_targets, seed=seed)
        source = f"{len(speakers)} speakers of {data_dir} (seed {seed})"
    used = {u for a, b, _ in trials for u in (a, b)}
    for path in eval_lists:
        shared = next((u for a, b, _ in read_trials(path) for u in (a, b) if u in used), None)
        if shared is not None:
            raise CalibrationError(f"'{shared}' is in the calibration trials ({source}) and in the evaluation list "
                                   f"{path}: calibrate on utterances the evaluation never sees")
    return trials, source


def calibrate(xvector_scp, data_dir: Path, scores_dir: Path, inputs: dict, *, dev_trials, num_speakers,
              max_targets, seed, p_target) -> dict:
    """The work of run_calibration, without the skip check."""
    eval_lists = [Path(t) for t in inputs["trials"]]
    scorer = Scorer(inputs)
    utts, emb = load_embeddings(xvector_scp)
    if scorer.mean is not None and scorer.mean.shape != emb.shape[1:]:
        raise DataDirError(f"{xvector_scp}: embeddings of dimension {emb.shape[1]}, but the scores were made with "
                           f"a mean of dimension {scorer.mean.shape[0]} (embeddings of another model?)")
    trials, source = calibration_trials(utts, data_dir, eval_lists, dev_trials=dev_trials,
                                        num_speakers=num_speakers, max_targets=max_targets, seed=seed)
    write_trials(scores_dir / CALIBRATION_TRIALS, trials)
    idx1, idx2, target = _trial_arrays(trials, {u: i for i, u in enumerate(utts)}, scores_dir / CALIBRATION_TRIALS)
    exclude = scorer.own_cohort_rows(utts, DataDir(data_dir).utt2spk)
    raw = scorer.score(emb, idx1, idx2, exclude)
    log.info("calibration trials: %d targets, %d non-targets (%s)", target.sum(), (~target).sum(), source)

    # Quality measures of the calibration utterances; a constant one carries nothing.
    rows = np.unique(np.concatenate([idx1, idx2]))
    seconds = durations_of(data_dir)
    durations = None if seconds is None or any(utts[r] not in seconds for r in rows) else \
        np.array([seconds[utts[r]] for r in rows])
    measures, names = scorer.measures(emb, rows, durations, exclude)
    left_out = {}
    if durations is None:
        left_out["duration"] = f"{data_dir} has no utt2dur or utt2num_frames for every calibration utterance"
    spread = measures.std(axis=0)
    for q, name in enumerate(names):
        if spread[q] <= 1e-9 * max(1.0, abs(measures[:, q].mean())):
            left_out[name] = "constant on the calibration trials (e.g. a length-normalised embedding and no mean)"
    keep = [q for q, name in enumerate(names) if name not in left_out]
    names = tuple(names[q] for q in keep)
    per_row = np.full((len(utts), len(names)), np.nan)
    per_row[rows] = measures[:, keep]

    fits: dict[str, dict[str, LinearCalibration]] = {}
    cal_metrics: dict[str, dict[str, float]] = {}
    for method, s in raw.items():
        features = {"linear": s}
        if names:
            features["qmf"], feature_names = qmf_features(s, per_row[idx1], per_row[idx2], names)
        fits[method] = {kind: fit_linear(x, target, p_target, names=None if kind == "linear" else feature_names)
                        for kind, x in features.items()}
        cal_metrics[method] = {kind: cllr(fits[method][kind](x), target) for kind, x in features.items()}

    eval_utts, eval_emb = load_embeddings(inputs["xvector_scp"])
    eval_index = {u: i for i, u in enumerate(eval_utts)}
    metrics: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    notes = []
    for path in eval_lists:
        name = list_name(path)
        trials_e = read_trials(path)
        e1, e2, labels = _trial_arrays(trials_e, eval_index, path)
        qmf_x = None
        if names:
            e_rows = np.unique(np.concatenate([e1, e2]))
            e_seconds = durations_of(path.parent) if "duration" in names else None
            if "duration" in names and (e_seconds is None or any(eval_utts[r] not in e_seconds for r in e_rows)):
                notes.append(f"{name}: no QMF ({path.parent} has no duration for every utterance of the list)")
            else:
                e_dur = None if e_seconds is None else np.array([e_seconds[eval_utts[r]] for r in e_rows])
                e_measures, e_names = scorer.measures(eval_emb, e_rows, e_dur)
                e_per_row = np.full((len(eval_utts), len(names)), np.nan)
                e_per_row[e_rows] = e_measures[:, [e_names.index(n) for n in names]]
                qmf_x = (e_per_row[e1], e_per_row[e2])
        metrics[name] = {}
        curves = {}
        for method in raw:
            scores = read_score_file(scores_dir / f"{name}.{method}.score", trials_e)
            metrics[name][method] = {}
            for kind, fit in fits[method].items():
                if kind == "qmf" and qmf_x is None:
                    continue
                llr = fit(scores if kind == "linear" else qmf_features(scores, *qmf_x, names)[0])
                write_text_atomic(scores_dir / f"{name}.{method}.{kind}.llr",
                                  "".join(f"{a} {b} {v:.6f}\n" for (a, b, _), v in zip(trials_e, llr)))
                metrics[name][method][kind] = llr_metrics(llr, labels)
                curves[f"{method}, {kind}"] = (llr, labels)
        plot_reliability(curves, scores_dir / f"reliability_{name}.png",
                         title=f"{name}: {scores_dir.parent.name}, calibrated on {len(trials)} trials",
                         thresholds={f"Bayes threshold, p={p:g}": bayes_threshold(p) for p in P_TARGETS})

    report = {
        "p_target": p_target,
        "calibration_trials": {"source": source, "file": CALIBRATION_TRIALS, "n_target": int(target.sum()),
                               "n_nontarget": int((~target).sum())},
        "measures": list(names),
        "left_out": left_out,
        "fits": {m: {k: {**f.to_dict(), "Cllr on the calibration trials": cal_metrics[m][k]} for k, f in kinds.items()}
                 for m, kinds in fits.items()},
        "notes": notes,
        "results": metrics,
    }
    write_text_atomic(scores_dir / CALIBRATION_JSON, json.dumps(report, indent=1) + "\n")
    write_text_atomic(scores_dir / CALIBRATION_MD, calibration_table(report, title=scores_dir.parent.name))
    write_calibration_record(threshold_path=scores_dir / THRESHOLD_JSON, fit=fits["cosine"]["linear"], source=source)
    return report


def write_calibration_record(threshold_path: Path, fit: LinearCalibration, source: str) -> None:
    """threshold.json, as stage 6 scoring wrote it (the mean, the EER threshold),
    with the linear calibration of the cosine that purl.load_model decides with."""
    if not threshold_path.is_file():
        raise DataDirError(f"{threshold_path}: missing (run steps/score.py first)")
    info = json.loads(threshold_path.read_text(encoding="utf-8"))
    info["calibration"] = {
        "method": "cosine", "kind": "linear", "scale": float(fit.weights[0]), "offset": float(fit.bias),
        "p_target": fit.p_target, "trials": source,
        "rule": "llr = scale * cosine(a - mean, b - mean) + offset; accept when llr >= log(C_fa (1 - p) / "
                "(C_miss p)) for a prior p",
    }
    write_text_atomic(threshold_path, json.dumps(info, indent=1) + "\n")


def write_scoring_checkpoint(scores_dir: str | os.PathLike) -> Path | None:
    """exp/<model>/models/final_scoring.pt: final.pt with threshold.json's content
    (the mean, the EER threshold, the calibration) under "scoring", so that a copy
    of this one file scores as stage 6 did (purl.load_model reads it). Written
    when older than either; None for scores outside an exp dir with a final.pt."""
    scores_dir = Path(scores_dir)
    outputs = TrainingOutputs(scores_dir.parent)
    final, threshold_path = outputs.final_checkpoint, scores_dir / THRESHOLD_JSON
    out = outputs.scoring_checkpoint
    if not final.is_file() or not threshold_path.is_file():
        return None
    newest = max(final.stat().st_mtime_ns, threshold_path.stat().st_mtime_ns)
    if out.is_file() and out.stat().st_mtime_ns >= newest:
        return out
    ckpt = load_checkpoint(final)
    ckpt["scoring"] = json.loads(threshold_path.read_text(encoding="utf-8"))
    save_atomic(ckpt, out)
    log.info("%s: the model with what stage 6 scores with (copy it alone to score elsewhere)", out)
    return out


def calibration_table(report: dict, title: str = "") -> str:
    """Markdown: a row per (trial list, scoring, calibration), then the fits' weights."""
    cal = report["calibration_trials"]
    lines = [f"### {title}: calibrated scores\n" if title else "",
             f"Calibrated on {cal['n_target']} target and {cal['n_nontarget']} non-target trials "
             f"({cal['source']}), at prior {report['p_target']:g}. actDCF: the cost of deciding at the Bayes "
             "threshold of the prior; minDCF: at the best threshold. Cllr in bits; min Cllr: after the best "
             "monotone map of the list (PAV).\n",
             "| trials | scoring + calibration | " + " | ".join(COLUMNS) + " |",
             "|---|---|" + "---:|" * len(COLUMNS)]
    for trials, methods in report["results"].items():
        for method, kinds in methods.items():
            for kind, metrics in kinds.items():
                lines.append(f"| {trials} | {method} + {kind} | " + " | ".join(
                    f"{metrics[c]:.2f}" if c.startswith("EER") else f"{metrics[c]:.4f}" for c in COLUMNS) + " |")
    lines.append("")
    for method, kinds in report["fits"].items():
        for kind, fit in kinds.items():
            terms = "".join(f" {'-' if w < 0 else '+'} {abs(w):.4g} x {n}" for w, n in zip(fit["weights"], fit["names"]))
            bias = fit["bias"]
            lines.append(f"- {method}, {kind}: llr ={terms.removeprefix(' +')} {'-' if bias < 0 else '+'} {abs(bias):.4g}")
    for name, why in report["left_out"].items():
        lines.append(f"- QMF without {name}: {why}")
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(line for line in lines if line is not None) + "\n"
