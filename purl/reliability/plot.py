"""The reliability plot: positive-pair cosines with the fitted components."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

import numpy as np

from purl.fileio import atomic_path
from purl.reliability.gmm import GmmParams
from purl.reliability.speakers import iter_speaker_blocks

if TYPE_CHECKING:
    from purl.reliability.reliability import Reliability


def _mixture_curves(params: GmmParams, rows: np.ndarray, grid: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Clean and noisy component densities on ``grid``, summed over speaker ``rows``
    each scaled by ``scale`` (its pairs times the bin width): (2, G)."""
    out = np.zeros((2, len(grid)))
    for chunk in np.array_split(rows, max(1, len(rows) // 512)):
        w, m, v = params.weights[chunk], params.means[chunk], params.variances[chunk]
        dens = w[:, :, None] * np.exp(-0.5 * (grid - m[:, :, None]) ** 2 / v[:, :, None]) / np.sqrt(2 * np.pi * v[:, :, None])
        dens *= scale[chunk][:, None, None]
        is_clean = np.arange(2)[None, :] == params.clean[chunk][:, None]
        out[0] += dens[is_clean].reshape(len(chunk), -1).sum(0)
        out[1] += dens[~is_clean].reshape(len(chunk), -1).sum(0)
    return out


class PlotCounts:
    """What plot_reliability draws from the pairs: the histogram of all
    positive-pair cosines on [-1, 1], [clean, noisy] by truth (all in row 0
    without it), and the cosines of a few example speakers (from the cleanest
    to the noisiest fit). Filled by one scan of the pairs: the plot's own, or
    detection_metrics_of_fits's (stage 4 then scans the pairs once for both)."""

    def __init__(self, params: GmmParams, n_examples: int = 4, n_bins: int = 200):
        # Examples: fitted noisy weight at evenly spaced ranks, among speakers with a fit.
        fitted = np.flatnonzero(~params.unit & (params.n_pairs > 0))
        noisy_weight = params.weights[fitted, 1 - params.clean[fitted].astype(np.intp)]
        ranked = fitted[np.argsort(noisy_weight, kind="stable")]
        self.examples = (ranked[np.linspace(0, len(ranked) - 1, min(n_examples, len(ranked))).astype(int)]
                         if len(ranked) else np.zeros(0, np.intp))
        self._example_set = set(self.examples.tolist())
        self.n_bins = n_bins
        self.total = np.zeros((2, n_bins))
        self.example_cos: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def empty_like(self) -> "PlotCounts":
        """Counts of the same examples and bins, none yet (one per scanning thread)."""
        other = object.__new__(PlotCounts)
        other.examples, other._example_set, other.n_bins = self.examples, self._example_set, self.n_bins
        other.total = np.zeros_like(self.total)
        other.example_cos = {}
        return other

    def merge(self, other: "PlotCounts") -> None:
        self.total += other.total
        self.example_cos.update(other.example_cos)

    def add(self, s: int, cos: np.ndarray, noisy: np.ndarray) -> None:
        """Speaker s's pair cosines and whether each pair is truly noisy."""
        pos = np.clip(((cos + 1) * (self.n_bins / 2)).astype(np.intp), 0, self.n_bins - 1)
        self.total += np.stack([np.bincount(pos[~noisy], minlength=self.n_bins),
                                np.bincount(pos[noisy], minlength=self.n_bins)])
        if s in self._example_set:
            self.example_cos[s] = (cos, noisy)


def plot_reliability(rel: Reliability, path: str | os.PathLike, true_labels: np.ndarray | None = None,
                     n_examples: int = 4, n_bins: int = 200, counts: PlotCounts | None = None,
                     speaker_names: Sequence[str] | None = None) -> None:
    """PNG: the histogram of all positive-pair cosines with the fitted components
    (per-speaker fits summed, each weighted by its pairs), and below it a few
    speakers from the cleanest to the noisiest fit. With ground truth the
    histograms are split into truly clean and noisy pairs. ``counts``: the
    plot's data already gathered (PlotCounts of rel.params, filled by
    detection_metrics_of_fits); otherwise the pairs are scanned here.
    ``speaker_names[label]``: the name a panel gives a speaker (default: its label number)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params, index = rel.params, rel.index
    true_codes = None if true_labels is None else np.unique(np.asarray(true_labels), return_inverse=True)[1].reshape(-1)
    if counts is None:
        counts = PlotCounts(params, n_examples, n_bins)
        for s, utts, gram, upper in iter_speaker_blocks(rel.embeddings, index):
            cos = gram[upper]
            noisy = (np.zeros(cos.size, bool) if true_codes is None
                     else (true_codes[utts][:, None] != true_codes[utts][None, :])[upper])
            counts.add(s, cos, noisy)
    examples, total, example_cos = counts.examples, counts.total, counts.example_cos
    edges = np.linspace(-1, 1, counts.n_bins + 1)

    fig = plt.figure(figsize=(12, 7.5), constrained_layout=True)
    grid_spec = fig.add_gridspec(2, max(1, len(examples)))
    fine = np.linspace(-1, 1, 801)

    def draw(ax, counts, curves, title):
        labels = ("truly clean pairs", "truly noisy pairs") if true_codes is not None else ("pairs", None)
        # One filled step artist per histogram, not a patch per bin (seconds to draw).
        ax.stairs(counts[0], edges, fill=True, color="tab:blue", alpha=0.5, label=labels[0])
        if true_codes is not None:
            ax.stairs(counts[0] + counts[1], edges, baseline=counts[0], fill=True, color="tab:red", alpha=0.5,
                      label=labels[1])
        ax.plot(fine, curves[0], color="tab:blue", lw=1.5, label="clean component")
        ax.plot(fine, curves[1], color="tab:red", lw=1.5, label="noisy component")
        ax.plot(fine, curves.sum(0), color="black", lw=1, ls="--", label="mixture")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("cosine")
        ax.set_xlim(*xlim)

    filled = np.flatnonzero(total.sum(0))
    xlim = (edges[filled[0]] - 0.05, edges[filled[-1] + 1] + 0.05) if len(filled) else (-1, 1)
    width = edges[1] - edges[0]
    curves = _mixture_curves(params, np.arange(len(params)), fine, params.n_pairs * width)
    ax = fig.add_subplot(grid_spec[0, :])
    draw(ax, total, curves, f"all {int(params.n_pairs.sum())} positive pairs of {len(index)} speakers "
                            f"({rel.estimator}; {int(params.unit.sum())} speakers with w=1)")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    for k, s in enumerate(examples):
        cos, noisy = example_cos[s]
        counts = np.stack([np.histogram(cos[~noisy], edges)[0], np.histogram(cos[noisy], edges)[0]])
        ax = fig.add_subplot(grid_spec[1, k])
        draw(ax, counts, _mixture_curves(params, np.array([s]), fine, params.n_pairs * width),
             f"speaker {index.speakers[s] if speaker_names is None else speaker_names[index.speakers[s]]}: "
             f"{len(index.utts(s))} utts")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
