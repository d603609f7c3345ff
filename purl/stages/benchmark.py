"""The noisy-label benchmark's table and figure (local/noise_benchmark.sh): the
stage-6 summaries of a grid of (seed, rate, noise type) cells, each
exp/summary<tag>_<noise><rate>_seed<seed>.json (steps/summarize.py --json; a cell
not run or failed is named and its numbers are '–'), to

    RESULTS.md         EER per method (mean ± sd over seeds), the share of the EER
                       lost to noise that each method gives back, per-seed wins,
                       and what stage 4 and the relabelling found (ground truth)
    benchmark.json     every number of the tables, per seed
    eer_vs_rate.png    EER against noise rate, a line per method, a panel per noise type
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from purl.data.datadir import DataDirError, read_kv
from purl.fileio import write_text_atomic
from purl.kaldi_io import load_embeddings
from purl.plots import save_figure

EER = "EER (%)"
# Method keys: the exp dir's name up to the first '_' (run.sh's method_exp); the
# pretrained model itself is "supcon" (no update).
METHOD_NAMES = {"supcon": "no update", "control": "control", "filter": "filtering", "purl": "PURL",
                "reestimate": "PURL, re-estimated", "relabel": "relabelled",
                "relabel_purl": "relabelled + PURL", "relabel_retrain": "relabelled, retrained",
                "relabel_unlearn": "relabelled + unlearn dropped", "regroup": "regrouped",
                "regroup_relabel": "regrouped, relabelled",
                "orgate": "OR-Gate"}


def noise_name(noise_type: str) -> str:
    """How run.sh names a kind in its dirs: permute is 'noisy' (the names it had before kinds)."""
    return "noisy" if noise_type == "permute" else noise_type


def rate_name(rate: float) -> str:
    """run.sh's spelling of a rate (awk's print r + 0): 0.2, 0, 0.15."""
    return f"{rate:g}"


def method_key(exp_dir: str) -> str:
    """The method of an exp dir (exp/relabel_unlearn_tuned_noisy0.2_seed0: relabel_unlearn;
    exp/filter0.5_...: filter): the longest method name it starts with."""
    name = Path(exp_dir).name
    if name.startswith("filter"):
        return "filter"
    known = [k for k in METHOD_NAMES if name.startswith(k + "_")]
    return max(known, key=len) if known else name.split("_", 1)[0]


def summary_path(work: Path, noise_type: str, rate: float, seed: int, tag: str = "") -> Path:
    noise = "noisy" if rate == 0 else noise_name(noise_type)
    return work / "exp" / f"summary{tag}_{noise}{rate_name(rate)}_seed{seed}.json"


def read_cell(path: Path) -> dict:
    """One cell's summary: {method: row} and its reports; a cell not run (or
    failed) is empty, marked missing, and its numbers are '–' in the tables."""
    if not path.is_file():
        return {"rows": {}, "reliability": {}, "estimators": {}, "relabel": {}, "regroup": {}, "missing": True}
    summary = json.loads(path.read_text())
    reliability = summary.get("reliability", {})
    return {"rows": {method_key(r["exp"]): r for r in summary["rows"]},
            "reliability": reliability.get("detection", {}), "estimators": reliability.get("compare", {}),
            "relabel": summary.get("relabel", {}), "regroup": summary.get("regroup", {})}


def swap_cosine(work: Path, noise_type: str, rate: float, seed: int, tag: str = "") -> float:
    """How confusable a cell's swaps are: the mean, over utterances under a wrong
    training speaker, of the cosine between the centroids of their true and
    their noisy speaker, by the model pretrained on the clean labels of the same
    seed (the rate-0 cell's stage-4 embeddings). nan for outsiders and split
    noise (no centroid of the true or the noisy label) or when the files are
    missing."""
    noisy_dir = work / "data" / f"train_{noise_name(noise_type)}{rate_name(rate)}_seed{seed}"
    scp = work / "exp" / f"supcon{tag}_noisy0_seed{seed}" / "embeddings" / "train" / "xvector.scp"
    if not (scp.is_file() and (noisy_dir / "utt2truespk").is_file()):
        return float("nan")
    utts, emb = load_embeddings(scp)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    label, truth = read_kv(noisy_dir / "utt2spk"), read_kv(noisy_dir / "utt2truespk")
    clean = read_kv(work / "data" / "train" / "utt2spk")
    speakers = sorted(set(clean.values()))
    index = {s: n for n, s in enumerate(speakers)}
    rows = [i for i, u in enumerate(utts) if u in clean]
    centroids = np.zeros((len(speakers), emb.shape[1]))
    np.add.at(centroids, [index[clean[utts[i]]] for i in rows], emb[rows])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    # Outsiders have no true centroid, split's new labels no noisy one.
    swapped = [(index[truth[u]], index[label[u]]) for u in label
               if truth[u] != label[u] and truth[u] in index and label[u] in index]
    if not swapped:
        return float("nan")
    true_idx, noisy_idx = np.array(swapped).T
    return float(np.einsum("ij,ij->i", centroids[true_idx], centroids[noisy_idx]).mean())


def collect(work: str | os.PathLike, seeds: list[int], rates: list[float], noise_types: list[str],
            tag: str = "") -> dict:
    """{noise_type: {rate: {seed: cell}}}; rate 0 is the same cell for every kind."""
    work = Path(work)
    grid = {t: {r: {s: read_cell(summary_path(work, t, r, s, tag)) for s in seeds} for r in rates}
            for t in noise_types}
    if all(cell.get("missing") for by_rate in grid.values() for by_seed in by_rate.values()
           for cell in by_seed.values()):
        raise DataDirError(f"{work / 'exp'}: no cell's summary{tag}_*_seed*.json of these seeds, rates and kinds "
                           "(local/noise_benchmark.sh runs the cells; --tag names the protocol)")
    for t in noise_types:
        for r in rates:
            for s in seeds:
                grid[t][r][s]["relabel"] = dict(grid[t][r][s]["relabel"], swap_cosine=swap_cosine(work, t, r, s, tag)
                                                if r > 0 else float("nan"))
    return grid


def recovered(eer_method: float, eer_noisy: float, eer_clean: float) -> float:
    """The share of the EER lost to noise (noisy model minus clean model) that a
    method gives back: 1 is all of it, 0 none, negative worse than no update."""
    lost = eer_noisy - eer_clean
    return (eer_noisy - eer_method) / lost if lost > 0 else float("nan")


def _nanmean(values) -> float:
    """The mean of the finite values; nan (without numpy's warning) when there are none."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def _not_run(cells: list[dict], lines: list[str], noise_type: str, rate: float, columns: int) -> bool:
    """Whether no seed of a (kind, rate) was run; then its row of '–' is added to ``lines``."""
    if not all(c.get("missing") for c in cells):
        return False
    lines.append(f"| {noise_type if rate else 'none'} | {rate_name(rate)} | " + " | ".join(["–"] * columns) + " |")
    return True


def tables(grid: dict, methods: list[str], seeds: list[int], rates: list[float], noise_types: list[str],
           header: str = "") -> tuple[str, dict]:
    """The markdown of RESULTS.md and the numbers behind it."""
    keys = ["supcon"] + methods
    numbers: dict = {}
    lines = [header, "", "## EER (%) per method, mean ± sd over seeds " + ", ".join(map(str, seeds)), "",
             "| noise | rate | " + " | ".join(METHOD_NAMES.get(k, k) for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for t in noise_types:
        for r in rates:
            if r == 0 and t != noise_types[0]:
                continue  # one cell without noise, whatever the kind
            cells = grid[t][r]
            per_method = {k: [cells[s]["rows"][k][EER] if k in cells[s]["rows"] else float("nan") for s in seeds]
                          for k in keys}
            numbers.setdefault(t, {})[rate_name(r)] = {"eer": per_method}
            lines.append(f"| {t if r else 'none'} | {rate_name(r)} | "
                         + " | ".join(_mean_sd(per_method[k]) for k in keys) + " |")

    lines += ["", "## Share of the EER lost to noise given back (%), mean over seeds", ""]
    if 0 not in rates:  # the share needs each seed's model pretrained on the clean labels (rate 0's cell)
        lines += ["(not computed: the grid has no rate 0, whose cell is each seed's clean model; "
                  "add 0 to --rates)"]
    else:
        lines += ["(no update: 0; the model pretrained on the clean labels of the same seed: 100)", "",
                  "| noise | rate | " + " | ".join(METHOD_NAMES.get(k, k) for k in methods) + " |",
                  "|---|---:|" + "---:|" * len(methods)]
    noisy_rates = [r for r in rates if r != 0] if 0 in rates else []  # shares need rate 0's clean models
    for t in noise_types:
        for r in noisy_rates:
            shares = {}
            for k in methods:
                per_seed = [recovered(grid[t][r][s]["rows"][k][EER], grid[t][r][s]["rows"]["supcon"][EER],
                                      grid[t][0][s]["rows"]["supcon"][EER])
                            if {k, "supcon"} <= grid[t][r][s]["rows"].keys() and "supcon" in grid[t][0][s]["rows"]
                            else float("nan") for s in seeds]
                shares[k] = per_seed
            numbers[t][rate_name(r)]["recovered"] = shares
            lines.append(f"| {t} | {rate_name(r)} | " + " | ".join(
                f"{100 * _nanmean(v):.0f}" if np.isfinite(_nanmean(v)) else "–" for v in shares.values()) + " |")

    lines += ["", "## Per seed: does each method beat filtering and the control (lower EER)?", "",
              "| noise | rate | method | beats filtering | beats control |", "|---|---:|---|---|---|"]
    for t in noise_types:
        for r in rates:
            if r == 0 and t != noise_types[0]:
                continue
            for k in methods:
                if k in ("control", "filter"):
                    continue
                marks = []
                for base in ("filter", "control"):
                    wins = [grid[t][r][s]["rows"][k][EER] < grid[t][r][s]["rows"][base][EER]
                            if {k, base} <= grid[t][r][s]["rows"].keys() else None for s in seeds]
                    marks.append(" ".join("–" if w is None else "yes" if w else "no" for w in wins))
                lines.append(f"| {t if r else 'none'} | {rate_name(r)} | {METHOD_NAMES.get(k, k)} | {marks[0]} | {marks[1]} |")

    lines += ["", "## What stage 4 and the relabelling found (ground truth of stage 2), mean over seeds", "",
              "(swap cosine: the clean model's centroid cosine of the true and the noisy speaker of a moved "
              "utterance; higher is more confusable)", "",
              "| noise | rate | swap cosine | pair AUC | utt AUC | relabel precision | relabel recall | moved | dropped "
              "| clean moved | outsiders dropped |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in noise_types:
        for r in rates:
            if r == 0:
                continue
            cells = [grid[t][r][s] for s in seeds]
            if _not_run(cells, lines, t, r, 9):
                continue

            def mean(part, key, cells=cells):
                return _nanmean([c[part].get(key) for c in cells])
            found = {k: mean("reliability", k) for k in ("pair_auc", "utt_auc")}
            found.update({k: mean("relabel", k) for k in ("relabel_precision", "relabel_recall", "moved", "dropped",
                                                          "clean_moved", "outsiders_dropped", "outsiders",
                                                          "swap_cosine")})
            numbers[t][rate_name(r)]["found"] = found
            outsiders = (f"{found['outsiders_dropped']:.0f} of {found['outsiders']:.0f}"
                         if np.isfinite(found["outsiders"]) else "–")
            lines.append(f"| {t} | {rate_name(r)} | {found['swap_cosine']:.3f} | {found['pair_auc']:.3f} | "
                         f"{found['utt_auc']:.3f} | "
                         f"{found['relabel_precision']:.3f} | {found['relabel_recall']:.3f} | {found['moved']:.0f} | "
                         f"{found['dropped']:.0f} | {found['clean_moved']:.0f} | {outsiders} |")
    lines += regroup_table(grid, seeds, rates, noise_types, numbers)
    lines += estimator_table(grid, seeds, rates, noise_types, numbers)
    return "\n".join(lines) + "\n", numbers


def regroup_table(grid: dict, seeds: list[int], rates: list[float], noise_types: list[str], numbers: dict) -> list[str]:
    """What the regroup method changed, against the ground truth: splits and joins
    (and how many were right), the pair precision (same-label pairs of one
    speaker) and pair recall (one speaker's pairs under one label) before and after."""
    if not any(grid[t][r][s]["regroup"] for t in noise_types for r in rates for s in seeds):
        return []
    lines = ["", "## What regrouping changed (ground truth of stage 2), mean over seeds", "",
             "| noise | rate | splits (right) | joins (right) | pair precision before → after "
             "| pair recall before → after |", "|---|---:|---:|---:|---:|---:|"]
    for t in noise_types:
        for r in rates:
            if r == 0:
                continue
            if _not_run([grid[t][r][s] for s in seeds], lines, t, r, 4):
                continue
            found = {k: _nanmean([grid[t][r][s]["regroup"].get(k) for s in seeds])
                     for k in ("splits", "splits_right", "joins", "joins_right", "pair_precision_before",
                               "pair_precision", "pair_recall_before", "pair_recall")}
            numbers[t][rate_name(r)]["regrouped"] = found
            lines.append(f"| {t} | {rate_name(r)} | {found['splits']:.1f} ({found['splits_right']:.1f}) | "
                         f"{found['joins']:.1f} ({found['joins_right']:.1f}) | "
                         f"{found['pair_precision_before']:.3f} → {found['pair_precision']:.3f} | "
                         f"{found['pair_recall_before']:.3f} → {found['pair_recall']:.3f} |")
    return lines


def estimator_table(grid: dict, seeds: list[int], rates: list[float], noise_types: list[str], numbers: dict) -> list[str]:
    """Stage 4's estimators side by side (its report compares them on the same
    pairs): the mislabelled-utterance F1 at w < threshold under noise, and the
    share of utterances flagged where there is none (false alarms)."""
    names = sorted({e for t in noise_types for r in rates for s in seeds for e in grid[t][r][s]["estimators"]})
    if not names:
        return []
    lines = ["", "## Stage 4's estimators: mislabelled-utterance F1 (utterances flagged at 0 noise), mean over seeds", "",
             "| noise | rate | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for t in noise_types:
        for r in rates:
            if r == 0 and t != noise_types[0]:
                continue
            if _not_run([grid[t][r][s] for s in seeds], lines, t, r, len(names)):
                continue
            key = "frac_utts_flagged" if r == 0 else "utt_f1"
            values = {e: [grid[t][r][s]["estimators"].get(e, {}).get(key, float("nan")) for s in seeds] for e in names}
            numbers[t][rate_name(r)].setdefault("estimators", {})[key] = values
            cells = [f"({100 * _nanmean(v):.1f}%)" if r == 0 else f"{_nanmean(v):.3f}" for v in values.values()]
            lines.append(f"| {t if r else 'none'} | {rate_name(r)} | " + " | ".join(cells) + " |")
    return lines


def plot_grid(grid: dict, methods: list[str], seeds: list[int], rates: list[float], noise_types: list[str],
              path: str | os.PathLike) -> None:
    """EER against rate, a line per method (mean, bars: sd over seeds), a panel per kind."""
    keys = ["supcon"] + methods
    fig = Figure(figsize=(4.2 * len(noise_types), 3.6))
    axes = fig.subplots(1, len(noise_types), sharey=True, squeeze=False)
    for ax, t in zip(axes[0], noise_types):
        for k in keys:
            xs, ys, es = [], [], []
            for r in sorted(rates):
                values = [grid[t][r][s]["rows"][k][EER] for s in seeds if k in grid[t][r][s]["rows"]]
                if values:
                    xs.append(r)
                    ys.append(np.mean(values))
                    es.append(np.std(values, ddof=1) if len(values) > 1 else 0.0)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=METHOD_NAMES.get(k, k),
                        linestyle="--" if k == "supcon" else "-")
        ax.set_title(f"{t} noise")
        ax.set_xticks(sorted(rates))
        ax.set_xlabel("noise rate")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("EER (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"EER against label-noise rate (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})")
    fig.tight_layout()
    save_figure(fig, path)


def write_benchmark(work: str | os.PathLike, seeds: list[int], rates: list[float], noise_types: list[str],
                    methods: list[str], tag: str = "", header: str = "") -> str:
    work = Path(work)
    grid = collect(work, seeds, rates, noise_types, tag)
    missing = sorted({summary_path(work, t, r, s, tag).stem.removeprefix(f"summary{tag}_")
                      for t in noise_types for r in rates for s in seeds if grid[t][r][s].get("missing")})
    if missing:
        header += f"\n\nCells not run or failed ('–' in the tables): {', '.join(missing)}."
    text, numbers = tables(grid, methods, seeds, rates, noise_types, header)
    plot_grid(grid, methods, seeds, rates, noise_types, work / "eer_vs_rate.png")
    write_text_atomic(work / "benchmark.json", json.dumps({"seeds": seeds, "rates": rates, "noise_types": noise_types,
                                                           "methods": methods, "missing": missing,
                                                           "numbers": numbers}, indent=1) + "\n")
    write_text_atomic(work / "RESULTS.md", text + "\n![EER against noise rate](eer_vs_rate.png)\n")
    return text
