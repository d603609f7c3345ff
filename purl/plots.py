"""PNG figures a person would rather look at than read."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

from purl.fileio import atomic_path

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: it takes half a second
    from matplotlib.figure import Figure


def _read_csv(path: Path) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = {}
    if not path.is_file():
        return columns
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                try:
                    columns.setdefault(key, []).append(float(value))
                except (TypeError, ValueError):
                    columns.setdefault(key, []).append(float("nan"))
    return columns


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")


def plot_training_curves(steps_csv: str | os.PathLike, epochs_csv: str | os.PathLike, out: str | os.PathLike,
                         title: str = "") -> Path:
    """``out`` (PNG) from a run's per-step and per-epoch CSV logs: loss terms,
    temperature, learning rate, clean-pair ratio (PURL) and the held-out metrics
    per epoch."""
    steps, epochs = _read_csv(Path(steps_csv)), _read_csv(Path(epochs_csv))
    panels = [("loss", ["loss", "supcon", "unlearn"]), ("temperature", ["temperature"]), ("learning rate", ["lr"])]
    if any(v == v for v in steps.get("clean_ratio", [])):
        panels.append(("clean pair ratio", ["clean_ratio"]))
    has_valid = any(v == v for v in epochs.get("valid_eer", []))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * (len(panels) + has_valid), 3.2))
    axes = fig.subplots(1, len(panels) + has_valid, squeeze=False)[0]
    x = steps.get("epoch", [])
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            values = steps.get(key, [])
            if values and any(v == v for v in values):
                ax.plot(x, values, label=key, linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(keys) > 1:
            ax.legend(fontsize=8)
    if has_valid:
        ax = axes[-1]
        ax.plot(epochs["epoch"], [100 * v for v in epochs["valid_eer"]], "o-", label="held-out EER (%)")
        ax.set_xlabel("epoch")
        ax.set_title("held-out EER (%)")
        twin = ax.twinx()
        twin.plot(epochs["epoch"], epochs["valid_target_cos"], "g--", label="target cos")
        twin.plot(epochs["epoch"], epochs["valid_nontarget_cos"], "r--", label="non-target cos")
        twin.legend(fontsize=8, loc="center right")
    fig.suptitle(title, y=1.03)
    save_figure(fig, out)
    return Path(out)


def plot_reliability(curves: dict, out: str | os.PathLike, title: str = "",
                     thresholds: dict[str, float] | None = None) -> Path:
    """A reliability diagram: for each {label: (llr, is_target)}, the LLR a bin
    of trials was given against the LLR its trials bear out (its empirical
    log-odds, purl.calibration.empirical_llr), dots sized by the bin's trials.
    Calibrated LLRs lie on the diagonal; a curve flatter than it is
    overconfident, one above it underconfident. ``thresholds``
    ({label: llr}) are drawn as vertical lines (Bayes thresholds)."""
    from matplotlib.figure import Figure

    from purl.calibration import empirical_llr

    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot()
    lo, hi = float("inf"), float("-inf")
    for label, (llr, is_target) in curves.items():
        x, y, counts = empirical_llr(llr, is_target)
        if not len(x):
            continue
        (line,) = ax.plot(x, y, "-", linewidth=1, label=label)
        ax.scatter(x, y, s=8 + 60 * counts / counts.max(), color=line.get_color())
        lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
    if lo < hi:
        ax.plot([lo, hi], [lo, hi], ":", color="gray", linewidth=0.8, label="calibrated")
    for label, value in (thresholds or {}).items():
        ax.axvline(value, color="gray", linestyle="--", linewidth=0.6)
        ax.text(value, ax.get_ylim()[0], f" {label}", rotation=90, va="bottom", fontsize=7, color="gray")
    ax.set_xlabel("calibrated LLR (bin mean)")
    ax.set_ylabel("empirical LLR: log-odds of the bin's trials minus the list's")
    ax.set_title(title or "reliability diagram")
    ax.grid(True, linestyle=":", linewidth=0.6)
    ax.legend(loc="upper left", fontsize="small")
    save_figure(fig, out)
    return Path(out)


def plot_eer_per_epoch(curves: dict[str, tuple[list[int], list[float]]], out: str | os.PathLike,
                       title: str = "") -> Path:
    """``out`` (PNG): EER (%) against the epoch, a line per {name: (epochs, EERs)}."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    for name, (epochs, eers) in curves.items():
        ax.plot(epochs, eers, "o-", markersize=3, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("EER (%)")
    ax.set_title(title)
    ax.grid(True, linestyle=":", linewidth=0.6)
    ax.legend(fontsize="small")
    save_figure(fig, out)
    return Path(out)


def plot_suspects(own, best, flagged, out: str | os.PathLike, title: str = "") -> Path:
    """``out`` (PNG) of ``purl clean``'s centroid rule: each utterance's cosine to
    its own speaker's centroid against the nearest other speaker's, suspects in
    red; above the diagonal, another speaker is nearer. A one-speaker dir (no
    other speaker): the histogram of the own cosines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    own, best, flagged = np.asarray(own), np.asarray(best), np.asarray(flagged, bool)
    fig, ax = plt.subplots(figsize=(6.5, 6), constrained_layout=True)
    if np.isfinite(best).any():
        ax.scatter(own[~flagged], best[~flagged], s=6, alpha=0.5, color="tab:blue", label="kept")
        ax.scatter(own[flagged], best[flagged], s=14, color="tab:red", label=f"suspected ({int(flagged.sum())})")
        low, high = float(min(own.min(), best.min())), float(max(own.max(), best.max()))
        ax.plot([low, high], [low, high], color="black", lw=0.8, ls="--", label="equally near both")
        ax.set_xlabel("cosine to its own speaker's centroid")
        ax.set_ylabel("cosine to the nearest other speaker's centroid")
    else:
        bins = np.linspace(float(own.min()) - 1e-6, float(own.max()) + 1e-6, 41)
        ax.hist([own[~flagged], own[flagged]], bins=bins, stacked=True, color=["tab:blue", "tab:red"],
                label=["kept", f"suspected ({int(flagged.sum())})"])
        ax.set_xlabel("cosine to its speaker's centroid")
        ax.set_ylabel("utterances")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    out = Path(out)
    save_figure(fig, out)
    plt.close(fig)
    return out
