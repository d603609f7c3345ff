"""Utterances grouped by speaker, and one speaker's Gram matrix at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from threadpoolctl import threadpool_limits


@dataclass
class SpeakerIndex:
    """Utterances grouped by speaker: speaker s owns ``order[starts[s]:starts[s+1]]``."""

    speakers: np.ndarray  # (S,) label values, sorted
    order: np.ndarray     # (N',) utterance indices, grouped by speaker, ascending within one
    starts: np.ndarray    # (S+1,)

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> tuple["SpeakerIndex", np.ndarray]:
        """Returns the index and ``utt_spk`` (N,): each utterance's row in ``speakers``."""
        speakers, utt_spk = np.unique(np.asarray(labels), return_inverse=True)
        order = np.argsort(utt_spk, kind="stable")
        starts = np.searchsorted(utt_spk[order], np.arange(len(speakers) + 1))
        return cls(speakers, order, starts), utt_spk.reshape(-1)

    def __len__(self) -> int:
        return len(self.speakers)

    def sizes(self) -> np.ndarray:
        return np.diff(self.starts)

    def utts(self, s: int) -> np.ndarray:
        return self.order[self.starts[s]:self.starts[s + 1]]

    def subset(self, rows: np.ndarray) -> "SpeakerIndex":
        """The index of speakers ``rows`` only (same utterance numbering)."""
        rows = np.asarray(rows)
        parts = [self.utts(s) for s in rows]
        starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        order = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return SpeakerIndex(self.speakers[rows], order, starts)


def normalise(embeddings: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copy of (N, D) embeddings (a zero row stays zero)."""
    x = np.array(embeddings, dtype=np.float32)  # a copy: the caller's array is kept
    norms = np.sqrt(np.einsum("nd,nd->n", x, x))
    x /= np.maximum(norms, 1e-12)[:, None]
    return x


def iter_speaker_blocks(x: np.ndarray, index: SpeakerIndex,
                        speakers: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Yields ``(s, utts, gram, upper)`` per speaker (of ``speakers``, default all):
    the Gram matrix (n, n) of its normalised embeddings and a boolean mask of the
    upper triangle (its pairs i<j).

    Speakers come smallest first so that consecutive speakers of one size share the
    mask (do not modify it); only one speaker's pairs are in memory at a time.
    """
    sizes = index.sizes()
    chosen = np.arange(len(sizes)) if speakers is None else np.sort(np.asarray(speakers, np.intp))
    order = chosen[np.argsort(sizes[chosen], kind="stable")]
    upper = np.zeros((0, 0), bool)
    # One BLAS thread: on matrices of a few hundred rows OpenBLAS's threads cost
    # more than they give, and on a busy machine a scan runs 20x slower with 2
    # threads than with 1 (measured). The limit holds while the caller works
    # on a block, and is lifted when the iteration ends.
    with threadpool_limits(limits=1, user_api="blas"):
        for s in order:
            utts = index.utts(s)
            xs = x[utts]
            if upper.shape[0] != len(utts):
                upper = np.triu(np.ones((len(utts), len(utts)), bool), 1)
            yield int(s), utts, xs @ xs.T, upper


def speaker_parts(index: SpeakerIndex, n_parts: int) -> list[np.ndarray]:
    """The speakers dealt into ``n_parts`` sets of near-equal pair counts
    (largest first, each to the set with the fewest pairs so far): one set
    per thread of a scan (purl.threads.in_threads), or per process of the
    sklearn fits (purl.processes.in_processes)."""
    sizes = index.sizes().astype(np.int64)
    n_parts = max(1, min(n_parts, len(sizes)))
    load = np.zeros(n_parts)
    owner = np.empty(len(sizes), np.intp)
    for s in np.argsort(-sizes, kind="stable"):
        k = int(np.argmin(load))
        owner[s] = k
        load[k] += sizes[s] * (sizes[s] - 1) / 2 + 1
    return [np.flatnonzero(owner == k) for k in range(n_parts)]
