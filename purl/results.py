"""Stage 6: trial scoring (cosine, AS-Norm), metrics, DET plots and result tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import kaldiio
import numpy as np

from purl.data.datadir import DataDirError, gc_paused, read_kv, write_text_atomic
from purl.evaluate import trial_indices
from purl.metrics import eer_from_points, metrics_from_points, operating_points, plot_det
from purl.scoring import as_norm, score_trials, speaker_means

COLUMNS = ("EER (%)", "minDCF(0.01)", "minDCF(0.05)")


# A binary Kaldi float vector: "\0B" "FV " then the size as a 4-byte int ("\4" first).
_FLOAT_VECTOR_HEADER = b"\0BFV \4"


def load_embeddings(scp: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(utterance ids in scp order, (N, D) float32) of an xvector.scp.

    Each ark is read once and the binary float vectors are gathered from it
    with numpy, not opened per entry (kaldiio's reader costs some 35 us per
    entry: 40 s for VoxCeleb2). Entries in any other form (double vectors,
    text arks) are read through kaldiio.
    """
    scp = Path(scp)
    if not scp.is_file():
        raise DataDirError(f"{scp}: no such embedding index (run steps/extract_embeddings.sh first)")
    with open(scp, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with gc_paused():
        rows = [line.split() for line in lines]
        locations = [(row[-1] if row else "").rpartition(":") for row in rows]
    bad = next((n for n, (row, (_, sep, offset)) in enumerate(zip(rows, locations))
                if len(row) != 2 or not sep or not offset.isdigit()), None)
    if bad is not None:
        raise DataDirError(f"{scp} line {bad + 1}: expected 'utt ark-path:offset', got '{lines[bad].strip()}'")
    if not rows:
        raise DataDirError(f"{scp}: no embeddings")
    utts = [row[0] for row in rows]
    ark_index: dict[str, int] = {}
    ark_of = np.array([ark_index.setdefault(ark, len(ark_index)) for ark, _, _ in locations])
    offsets = [int(offset) for _, _, offset in locations]
    offsets_arr = np.array(offsets, dtype=np.int64)
    del lines, rows, locations
    emb: np.ndarray | None = None

    def put(rows: np.ndarray, vectors: np.ndarray) -> None:
        nonlocal emb
        if emb is None:
            emb = np.empty((len(utts), vectors.shape[1]), dtype=np.float32)
        if vectors.shape[1] != emb.shape[1]:
            raise DataDirError(f"{scp}: embeddings of dimension {emb.shape[1]} and {vectors.shape[1]} (mixed models?)")
        emb[rows] = vectors

    header = len(_FLOAT_VECTOR_HEADER) + 4
    for ark, n in ark_index.items():
        rows = np.flatnonzero(ark_of == n)
        try:
            data = np.fromfile(ark, dtype=np.uint8)
        except OSError as e:
            raise DataDirError(f"{scp}: cannot read {ark}: {e} (rerun steps/extract_embeddings.sh)") from e
        starts = offsets_arr[rows]
        inside = starts + header <= len(data)
        head = data[np.where(inside, starts, 0)[:, None] + np.arange(header)]
        fast = inside & (head[:, :header - 4] == np.frombuffer(_FLOAT_VECTOR_HEADER, np.uint8)).all(axis=1)
        dims = np.ascontiguousarray(head[:, header - 4:]).view("<i4").ravel()
        for dim in np.unique(dims[fast]):
            take = np.flatnonzero(fast & (dims == dim))
            if starts[take].max() + header + 4 * dim > len(data):
                raise DataDirError(f"{scp}: {ark} ends inside an embedding (rerun steps/extract_embeddings.sh)")
            body = starts[take] + header
            for align in range(4):  # the ark as floats from each byte alignment
                floats = np.frombuffer(data, "<f4", count=(len(data) - align) // 4, offset=align)
                here = np.flatnonzero(body % 4 == align)
                for chunk in np.array_split(here, len(here) // 16384 + 1):  # bounds the index array
                    put(rows[take[chunk]], floats[(body[chunk] // 4)[:, None] + np.arange(int(dim))])
        for r in rows[~fast]:
            put(np.array([r]), np.asarray(kaldiio.load_mat(f"{ark}:{offsets[r]}"), dtype=np.float32).reshape(1, -1))
    return utts, emb


def read_vector(path: str | os.PathLike) -> np.ndarray:
    """A Kaldi text vector "[ 0.1 0.2 ]"."""
    text = Path(path).read_text().replace("[", " ").replace("]", " ")
    return np.array(text.split(), dtype=np.float32)


def cohort_from_embeddings(scp: str | os.PathLike, utt2spk: str | os.PathLike) -> np.ndarray:
    """Speaker-mean embeddings (C, D) of a training set: the AS-Norm cohort."""
    utts, emb = load_embeddings(scp)
    spk_of = read_kv(utt2spk)
    missing = next((u for u in utts if u not in spk_of), None)
    if missing is not None:
        raise DataDirError(f"{utt2spk}: no speaker for '{missing}' of {scp}")
    speakers = np.unique([spk_of[u] for u in utts], return_inverse=True)[1]
    # Raw scale, like the mean vector that scoring subtracts from both sides.
    return speaker_means(emb, speakers)


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

    Returns {trial list: {method: {EER (%), minDCF(0.01), minDCF(0.05)}}}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    utts, emb = load_embeddings(emb_scp)
    if mean is not None and mean.shape != emb.shape[1:]:
        raise DataDirError(f"mean vector of dimension {mean.shape[0]} for embeddings of dimension {emb.shape[1]} "
                           "(the mean and the embeddings come from different models)")
    index = {u: i for i, u in enumerate(utts)}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for path in trial_paths:
        name = path.name.removeprefix("trials_") if path.name != "trials" else Path(path).parent.name
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
            figures = metrics_from_points(points)
            results[name][method] = {
                "EER (%)": 100 * figures["eer"],
                "minDCF(0.01)": figures["min_dcf_0.01"],
                "minDCF(0.05)": figures["min_dcf_0.05"],
            }
            curves[f"{method} (EER {100 * eer_from_points(points)[0]:.2f}%)"] = (points.p_miss, points.p_fa)
        plot_det(curves, out_dir / f"det_{name}.png", title=f"{name}: {out_dir.parent.name}")
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=1) + "\n")
    write_text_atomic(out_dir / "results.md", results_table(results, title=str(out_dir.parent.name)))
    return results


def results_table(results: dict[str, dict[str, dict[str, float]]], title: str = "") -> str:
    """A markdown table: a row per (trial list, method)."""
    lines = [f"## {title}\n"] if title else []
    lines += ["| trials | scoring | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
    for trials, methods in results.items():
        for method, figures in methods.items():
            lines.append(f"| {trials} | {method} | {figures['EER (%)']:.2f} | "
                         f"{figures['minDCF(0.01)']:.4f} | {figures['minDCF(0.05)']:.4f} |")
    return "\n".join(lines) + "\n"


def collect_results(exp_root: str | os.PathLike, out: str | os.PathLike) -> str:
    """RESULTS.md: every exp/<model>/scores/results.md of a recipe, one table each."""
    exp_root = Path(exp_root)
    parts = ["# Results\n", "Every scored model of this recipe (steps/score.py writes each "
             "exp/<model>/scores/results.md; EER in %, minDCF with C_miss = C_fa = 1).\n"]
    for path in sorted(exp_root.glob("*/scores/results.md")):
        parts.append(path.read_text())
    text = "\n".join(parts)
    write_text_atomic(out, text)
    return text


def summary_table(rows: list[tuple[str, Path]], reliability_report: Path | None = None,
                  scoring: str = "cosine") -> str:
    """One table over models: a row per (label, exp dir), EER and minDCF of its
    first trial list; then the reliability stage's detection figures."""
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for label, exp_dir in rows:
        path = Path(exp_dir) / "scores" / "results.json"
        if not path.is_file():
            raise DataDirError(f"{path}: missing (run stage 6 for {exp_dir})")
        results = json.loads(path.read_text())
        figures = next(iter(results.values()))[scoring]
        lines.append(f"| {label} | " + " | ".join(
            f"{figures[c]:.2f}" if c.startswith("EER") else f"{figures[c]:.4f}" for c in COLUMNS) + " |")
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
