"""Regrouping: labels that hold two voices split, labels of one voice joined.

Relabelling (purl.relabel) moves single utterances between labels that are
each one speaker. Two kinds of label error break that premise: two people
under one name (``merge`` noise: the label holds two voices, and the absorbed
speaker has no label of its own to move to) and one person under two names
(``split`` noise: two labels hold one voice, so their pairs train as
negatives). This module finds both in the pretrained model's embeddings, with
cuts taken from the labels themselves rather than from cosine constants, which
differ between models and corpora:

1. Join. Two labels are one voice when each is the other's nearest label,
   the cosine of their centroids is at least the lower of their
   self-consistencies (the cosine between the centroids of two random halves
   of a label, the mean over ``halves`` halvings) and they are set apart from
   the rest: at most half as far from each other (1 - cosine) as from either's
   next nearest label. Two labels of one voice are as alike as the halves of
   either; two speakers are far less so, except in a model trained on heavy
   noise, which draws every centroid near every other (at 40% uniform swaps on
   speechocean762 the nearest label is at 0.97, the halves at 0.98): there
   the second test keeps them apart. The joined
   label takes the name of the one with more utterances (on a tie, the name
   first in order). Joins come first: twins of one voice would raise the
   split's cut below.
2. Split. Each label's utterances in two groups by spherical 2-means (the
   best fit of ``restarts`` random starts and the pair of the utterance
   farthest from the label's centroid and the one farthest from that: one
   start alone often groups a merged label's outliers instead of its voices).
   The label holds two voices when
   - the groups are far apart: the cosine of their centroids is below the
     higher of two cuts, the median over labels of a label's cosine to its
     nearest other label (as far apart as two speakers), and the median over
     labels of their own two groups' cosine minus ``split_spread`` robust
     standard deviations (1.4826 MAD). The second matters after training:
     a model pretrained on a merged label has drawn its two voices together
     (on speechocean762 at 20% merge, 0.79-0.85 against a median of 0.94 for
     a label's two groups and 0.65 for the nearest other label), but not as
     close as the two halves of one voice;
   - each group is a voice: tighter than the label as a whole (the median
     cosine of its utterances to its centroid above the label's). Two voices
     are each tighter than their union; mislabelled utterances scattered over
     many speakers are far from the rest too, but looser than the label;
   - the smaller group has at least ``min_share`` of the label's utterances
     and ``min_utts`` (fewer: the separation of a partition of one voice
     varies as much as that of two voices).
   The smaller group takes a new label, ``<label>-2`` (``-3``, ... if taken).
3. Join again: a voice split off may have a label of its own elsewhere.

The regrouped labels are a plain data dir (purl.stages.regroup_data_dir); the
update then trains on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from purl.errors import PurlError
from purl.relabel import checked_inputs, label_groups
from purl.scoring import l2_normalise


class RegroupError(PurlError, ValueError):
    """Embeddings, labels or settings the regrouping cannot use."""


@dataclass(frozen=True)
class RegroupSettings:
    min_share: float = 0.25  # a split's smaller voice holds at least this share of its label's utterances
    min_utts: int = 8        # and at least this many (fewer: a partition of one voice as far apart)
    split_spread: float = 3.0  # a split's voices are further apart than the median label's halves by this many robust sds
    iterations: int = 10     # of the spherical 2-means that splits a label
    restarts: int = 10       # random starts of the 2-means beside the farthest pair (the best fit is kept)
    halves: int = 4          # random halvings per label that measure its self-consistency (join)
    seed: int = 0            # of the halvings and the random starts

    def check(self) -> None:
        if not 0 < self.min_share <= 0.5:
            raise RegroupError(f"min_share {self.min_share} must be in (0, 0.5]: the smaller of two groups")
        if self.split_spread < 0:
            raise RegroupError(f"split_spread {self.split_spread} must be >= 0")
        for name, least in (("min_utts", 1), ("iterations", 1), ("halves", 1), ("restarts", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < least:
                raise RegroupError(f"{name} {value} must be a whole number >= {least}")


@dataclass
class Regrouping:
    """``new``: (U,) the new label of each utterance, an index into ``names``
    (the old labels first, in their order, then the split-off ones), and
    ``stages``: the labels the joins and splits were decided on (the old ones,
    after the first joins, after the splits); the splits as (label, new
    label, utterances moved, separation cosine) and the joins as (label,
    joined into, cosine, the lower self-consistency, index into ``stages``),
    label indices into ``names``; the split's cut."""
    new: np.ndarray
    stages: list[np.ndarray]
    names: list[str]
    splits: list[tuple[int, int, int, float]]
    joins: list[tuple[int, int, float, float, int]]
    separation_cut: float


def _unit_centroid(rows: np.ndarray) -> np.ndarray:
    """(D,) the unit vector along the sum of (n, D) rows (zero for none)."""
    return l2_normalise(rows.sum(axis=0, keepdims=True))[0]


def _nearest_other(centroids: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S,) each unit centroid's nearest other centroid, their cosine and the
    cosine of the second nearest, (chunk, S) at a time."""
    nearest = np.zeros(len(centroids), dtype=np.int64)
    cosine = np.full(len(centroids), -np.inf)
    second = np.full(len(centroids), -np.inf)
    for start in range(0, len(centroids), chunk):
        cos = centroids[start:start + chunk] @ centroids.T
        rows = np.arange(cos.shape[0])
        cos[rows, rows + start] = -np.inf
        nearest[start:start + chunk] = cos.argmax(axis=1)
        cosine[start:start + chunk] = cos[rows, nearest[start:start + chunk]]
        cos[rows, nearest[start:start + chunk]] = -np.inf
        second[start:start + chunk] = cos.max(axis=1)
    return nearest, cosine, second


def _tightness(emb: np.ndarray) -> float:
    """The median cosine of unit rows to their unit centroid."""
    return float(np.median(emb @ _unit_centroid(emb)))


def two_means(emb: np.ndarray, iterations: int, restarts: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
    """(n,) bool: the second of two groups of unit rows by spherical 2-means: of
    the starts (the row farthest from the centroid with the row farthest from
    it, and ``restarts`` random pairs of rows), the grouping whose rows are
    nearest their group's centroid (the largest sum of cosines)."""
    first = int(np.argmin(emb @ _unit_centroid(emb)))
    starts = [(first, int(np.argmin(emb @ emb[first])))]
    if restarts:
        starts += [tuple(rng.choice(len(emb), 2, replace=False)) for _ in range(restarts)]
    best, best_fit = np.zeros(len(emb), bool), -np.inf
    for start in starts:
        centres = emb[list(start)]
        in_second = np.zeros(len(emb), bool)
        for _ in range(iterations):
            cos = emb @ centres.T
            new = cos[:, 1] > cos[:, 0]
            if np.array_equal(new, in_second) or not new.any() or new.all():
                break
            in_second = new
            centres = l2_normalise(np.stack([emb[~new].sum(axis=0), emb[new].sum(axis=0)]))
        fit = np.linalg.norm(emb[~in_second].sum(axis=0)) + np.linalg.norm(emb[in_second].sum(axis=0))
        if fit > best_fit:
            best, best_fit = in_second, fit
    return best


def self_consistency(emb: np.ndarray, halves: int, rng: np.random.Generator) -> float:
    """The mean cosine between the centroids of two random halves of unit rows
    (nan for fewer than 2)."""
    if len(emb) < 2:
        return float("nan")
    values = []
    for _ in range(halves):
        first = rng.permutation(len(emb)) < len(emb) // 2
        values.append(float(_unit_centroid(emb[first]) @ _unit_centroid(emb[~first])))
    return float(np.mean(values))


def _new_name(label: str, taken: set[str]) -> str:
    k = 2
    while f"{label}-{k}" in taken:
        k += 1
    return f"{label}-{k}"


def _groups_and_centroids(emb: np.ndarray, labels: np.ndarray, n_labels: int) -> tuple[list[np.ndarray],
                                                                                    np.ndarray]:
    groups = label_groups(labels, n_labels)
    centroids = np.zeros((n_labels, emb.shape[1]))
    for s, g in enumerate(groups):
        centroids[s] = emb[g].sum(axis=0)
    return groups, l2_normalise(centroids)  # a label left empty by a join: a zero row, nobody's nearest


def _joins(emb: np.ndarray, labels: np.ndarray, names: list[str], settings: RegroupSettings,
           rng: np.random.Generator) -> list[tuple[int, int, float, float]]:
    """Mutual nearest labels as alike as the halves of either and apart from the rest: (label, joined into,
    cosine, the lower self-consistency); the larger label keeps its name (on a tie,
    the name first in order)."""
    groups, centroids = _groups_and_centroids(emb, labels, len(names))
    nearest, cosine, second = _nearest_other(centroids)
    consistency = np.array([self_consistency(emb[g], settings.halves, rng) if len(g) else np.nan for g in groups])
    joins = []
    for s in range(len(names)):
        t = int(nearest[s])
        pair = consistency[[s, t]]
        if s > t or nearest[t] != s or np.isnan(pair).all() or not len(groups[s]) or not len(groups[t]):
            continue
        lower = float(np.nanmin(pair))
        # as alike as the halves of either, and set apart from every other label: at most half as far
        # (1 - cosine) from each other as from either's next nearest (a model trained on heavy noise
        # draws every centroid near every other, and near its own halves too)
        if cosine[s] >= lower and 2 * (1 - cosine[s]) <= 1 - max(second[s], second[t]):
            keep = min((s, t), key=lambda k: (-len(groups[k]), names[k]))
            drop = s + t - keep
            joins.append((drop, keep, float(cosine[s]), lower))
    return joins


def _splits(emb: np.ndarray, labels: np.ndarray, n_labels: int, settings: RegroupSettings,
            rng: np.random.Generator) -> tuple[
        list[tuple[int, np.ndarray, float]], float]:
    """Labels holding two voices: [(label, the utterances of the smaller voice,
    the separation cosine)], and the separation cut."""
    candidates = []  # (label, the smaller group, separation, whether each group is tighter than the label)
    for s, g in enumerate(label_groups(labels, n_labels)):
        if len(g) < 2 * settings.min_utts:
            continue
        second = two_means(emb[g], settings.iterations, settings.restarts, rng)
        if second.sum() > len(g) / 2:
            second = ~second  # the second group is the smaller
        a, b = emb[g[~second]], emb[g[second]]
        separation = float(_unit_centroid(a) @ _unit_centroid(b)) if second.any() else 1.0
        voices = second.sum() >= max(settings.min_utts, settings.min_share * len(g)) and \
            min(_tightness(a), _tightness(b)) > _tightness(emb[g])
        candidates.append((s, g[second], separation, voices))
    if not candidates:
        return [], float("nan")
    # two speakers: further apart than the median label from its nearest other label; or further apart
    # than labels' two groups are, by split_spread robust sds (a model trained on the merged label has
    # drawn its voices together, but less than one voice's halves)
    nearest = _nearest_other(_groups_and_centroids(emb, labels, n_labels)[1])[1]
    separations = np.array([c[2] for c in candidates])
    median = float(np.median(separations))
    cut = max(float(np.median(nearest[np.isfinite(nearest) & (np.bincount(labels, minlength=n_labels) > 0)])),
              median - settings.split_spread * 1.4826 * float(np.median(np.abs(separations - median))))
    return [(s, utts, sep) for s, utts, sep, voices in candidates if voices and sep < cut], cut


def regroup(emb: np.ndarray, labels: np.ndarray, names: list[str],
            settings: RegroupSettings = RegroupSettings()) -> Regrouping:
    """(U, D) embeddings, (U,) labels 0..S-1 and the S label names -> the
    regrouping: joins, then splits with a cut from the joined labels (twins of
    one voice would raise it), then joins again (a split-off voice may have a
    label of its own elsewhere)."""
    settings.check()
    emb, labels, _ = checked_inputs(emb, labels, RegroupError)
    if len(names) < 2:
        raise RegroupError("regrouping needs at least 2 labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise RegroupError(f"labels must be indices of the {len(names)} names")
    empty = np.flatnonzero(np.bincount(labels, minlength=len(names)) == 0)
    if len(empty):
        raise RegroupError(f"label '{names[empty[0]]}' has no utterance")
    emb = l2_normalise(emb)
    rng = np.random.default_rng(settings.seed)
    names, stages, joins = list(names), [labels], []

    def join(current: np.ndarray) -> np.ndarray:
        found = _joins(emb, current, names, settings, rng)
        joins.extend((*j, len(stages) - 1) for j in found)
        into = np.arange(len(names))
        into[[d for d, *_ in found]] = [k for _, k, *_ in found]
        return into[current]

    stages.append(join(labels))
    found, separation_cut = _splits(emb, stages[-1], len(names), settings, rng)
    new, taken, splits = stages[-1].copy(), set(names), []
    for s, utts, separation in found:
        name = _new_name(names[s], taken)
        taken.add(name)
        names.append(name)
        new[utts] = len(names) - 1
        splits.append((s, len(names) - 1, len(utts), separation))
    stages.append(new)
    return Regrouping(new=join(new), stages=stages, names=names, splits=splits, joins=joins,
                      separation_cut=separation_cut)


def pair_structure(labels: np.ndarray, true_labels: np.ndarray) -> dict[str, float]:
    """Against the ground truth, over the pairs of utterances: pair precision (of
    the same-label pairs, the fraction of one true speaker: what merge noise and
    mislabelled utterances lower) and pair recall (of the pairs of one true
    speaker, the fraction under one label: what split noise lowers)."""
    labels, true_labels = np.asarray(labels), np.asarray(true_labels)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    _, cell = np.unique(np.stack([labels, true_labels]), axis=1, return_counts=True)
    both = pairs(cell)
    same_label = pairs(np.unique(labels, return_counts=True)[1])
    same_true = pairs(np.unique(true_labels, return_counts=True)[1])
    return {"pair_precision": both / same_label if same_label else None,
            "pair_recall": both / same_true if same_true else None}


def regrouping_metrics(labels: np.ndarray, regrouping: Regrouping, true_labels: np.ndarray) -> dict:
    """Against the ground truth (``true_labels``: any integer per true speaker):
    the pair precision and recall of the labels before and after
    (:func:`pair_structure`), and how many splits parted two true speakers
    (the groups' most frequent true speakers differ) and joins united one
    (the labels' most frequent true speakers agree)."""
    true_labels = np.asarray(true_labels)

    def majority(stage: int, s: int) -> int:
        values, counts = np.unique(true_labels[regrouping.stages[stage] == s], return_counts=True)
        return int(values[counts.argmax()])

    before, after = pair_structure(labels, true_labels), pair_structure(regrouping.new, true_labels)
    return {"pair_precision_before": before["pair_precision"], "pair_recall_before": before["pair_recall"],
            "pair_precision": after["pair_precision"], "pair_recall": after["pair_recall"],
            "splits_right": sum(majority(2, s) != majority(2, n) for s, n, *_ in regrouping.splits),
            "joins_right": sum(majority(stage, s) == majority(stage, t) for s, t, *_, stage in regrouping.joins)}
