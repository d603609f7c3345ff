"""Callbacks that refit something with the model being trained, at the start of
every N-th epoch: PURL's pair weights (purl.reestimate_every), CHNS's
speaker clusters (chns.refresh_every) and OR-Gate's selection of the
utterances trained on (orgate.refit_every).

All follow one procedure, :class:`EpochRefit`: find the epoch whose model is
due; unless its fit is already on disk, embed the training set on every
process, fit and write on process 0, and wait for it there; then load the fit
on every process. A resumed run finds the fits on disk and uses exactly the
ones it had.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from purl.data.chns import ClusterBatchSampler, speaker_clusters
from purl.data.datadir import read_kv, write_kv
from purl.data.dataset import SpeakerBatchSampler
from purl.embed import embed_utterances
from purl.features import TOP_DB
from purl.orgate import orgate_select, own_label_rank
from purl.pair_weights import PairWeights, UtteranceMask
from purl.reliability import Reliability
from purl.training.callbacks import TrainingCallback, TrainingState


def embed_training_set(state: TrainingState) -> np.ndarray:
    """(N, D) embeddings of every training utterance with the encoder being trained;
    each process embeds every world_size-th utterance and all gather the rest."""
    data, dist_ctx = state.data, state.dist
    shard = np.arange(dist_ctx.rank, len(data), dist_ctx.world_size)
    local = embed_utterances(state.encoder, [data.feats[i] for i in shard], data.num_frames[shard],
                             device=dist_ctx.device, top_db=TOP_DB[data.feature_type])
    state.encoder.train()
    parts = [local]
    if dist_ctx.world_size > 1:
        parts = [None] * dist_ctx.world_size
        torch.distributed.all_gather_object(parts, local)
    embeddings = np.empty((len(data), local.shape[1]), dtype=np.float32)
    for rank, part in enumerate(parts):
        embeddings[rank::dist_ctx.world_size] = part
    return embeddings


class EpochRefit(TrainingCallback, ABC):
    """At an epoch's start, the fit made with the model of the due epoch: the
    last multiple of ``every`` epochs (epoch 0 when ``every`` <= 0), kept at
    ``path_of(due)``. ``fitted_at``: the due epoch of the fit in use (None: none yet).

    A subclass says how a fit is made, written, recognised on disk and loaded.
    """

    def __init__(self, every: int, path_of: Callable[[int], Path], fitted_at: int | None):
        self.every, self.path_of, self.fitted_at = every, path_of, fitted_at

    def on_epoch_start(self, state: TrainingState) -> None:
        due = 0 if self.every <= 0 else (state.epoch // self.every) * self.every
        if due == self.fitted_at:
            return
        path = self.path_of(due)
        if not self.is_saved(path):
            embeddings = embed_training_set(state)
            if state.dist.main:
                self.fit(embeddings, state, path)
            state.dist.barrier()
        self.load(path, state, due)
        self.fitted_at = due

    @abstractmethod
    def is_saved(self, path: Path) -> bool:
        """Whether a complete fit is at ``path`` (made by an earlier run or epoch)."""

    @abstractmethod
    def fit(self, embeddings: np.ndarray, state: TrainingState, path: Path) -> None:
        """Fits on (N, D) training-set embeddings and writes the fit to ``path`` (process 0 only)."""

    @abstractmethod
    def load(self, path: Path, state: TrainingState, due: int) -> None:
        """Puts the fit at ``path``, made with the model of epoch ``due``, in use (every process)."""


class PurlPairWeights(EpochRefit):
    """The pair weights of a PURL loss: stage 4's (``weights``) until epoch
    ``reestimate_every``, then refitted with the current model every
    ``reestimate_every`` epochs into ``refit_dir(epoch)``; 0 keeps stage 4's
    (or the fixed weights of an UtteranceMask, which has no fit to refit)."""

    provides_pair_weights = True

    def __init__(self, weights: PairWeights | UtteranceMask, *, reestimate_every: int = 0,
                 refit_dir: Callable[[int], Path] | None = None):
        # fitted_at=0: stage 4's weights stand for the pretrained model's (epoch 0)
        super().__init__(reestimate_every, refit_dir, fitted_at=0)
        self.weights = weights

    def is_saved(self, path: Path) -> bool:
        return Reliability.is_saved(path)

    def fit(self, embeddings: np.ndarray, state: TrainingState, path: Path) -> None:
        rel = self.weights.reliability
        Reliability.fit(embeddings, state.data.labels, rel.estimator, rel.settings).save(path)

    def load(self, path: Path, state: TrainingState, due: int) -> None:
        self.weights = PairWeights(Reliability.load(path), np.arange(len(state.data)))
        state.print(f"pair weights re-estimated with the model of epoch {due} ({path})")

    def pair_weights(self, utts: np.ndarray, labels: np.ndarray) -> torch.Tensor:
        return self.weights.pair_weights(utts, labels)


class ChnsClusters(EpochRefit):
    """The speaker clusters of a ClusterBatchSampler, made with the current model
    at the first epoch and every ``refresh_every`` epochs after, kept in
    ``cluster_file(epoch)``."""

    def __init__(self, sampler: ClusterBatchSampler, *, num_clusters: int, refresh_every: int,
                 cluster_file: Callable[[int], Path]):
        super().__init__(refresh_every, cluster_file, fitted_at=None)
        self.sampler, self.num_clusters = sampler, num_clusters

    def is_saved(self, path: Path) -> bool:
        return path.is_file()

    def fit(self, embeddings: np.ndarray, state: TrainingState, path: Path) -> None:
        clusters = speaker_clusters(embeddings, state.data.labels, self.num_clusters, seed=self.sampler.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_kv(path, {s: int(c) for s, c in zip(state.data.speakers, clusters)})

    def load(self, path: Path, state: TrainingState, due: int) -> None:
        table = read_kv(path)
        sampler = self.sampler
        sampler.set_clusters(np.array([int(table[s]) for s in state.data.speakers]))
        sizes = np.bincount(sampler.clusters)
        state.print(f"CHNS: {len(sampler.by_speaker)} speakers in {len(sizes)} clusters (sizes {sizes.min()}-"
                    f"{sizes.max()}) with the model of epoch {due}; {sampler.num_hard} of {sampler.P} speakers "
                    f"per batch from them ({path})")


class OrGateSelection(EpochRefit):
    """OR-Gate (purl.orgate): the utterances ``sampler`` draws are those whose
    label was among their ``top_k`` nearest speaker centroids at any fit so far,
    the fits made with the current model at the first epoch and every
    ``refit_every`` epochs after (0: the first only). Each fit's ranks of the own
    labels are kept in ``rank_file(epoch)``; the selection in use is the OR of
    all of them up to the due epoch, so a resumed run rebuilds it from the files.
    ``on_epoch_end`` gives the epoch's row how many utterances were selected and,
    with utt2truespk, how many of them are mislabelled."""

    def __init__(self, sampler: SpeakerBatchSampler, *, top_k: int, refit_every: int,
                 rank_file: Callable[[int], Path]):
        super().__init__(refit_every, rank_file, fitted_at=None)
        self.sampler, self.top_k = sampler, top_k
        self.selected: np.ndarray | None = None  # the OR of the fits so far
        self.n_fits = 0

    def is_saved(self, path: Path) -> bool:
        return path.is_file()

    def fit(self, embeddings: np.ndarray, state: TrainingState, path: Path) -> None:
        rank = own_label_rank(embeddings, state.data.labels)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_kv(path, {u: int(r) for u, r in zip(state.data.utts, rank)})

    def load(self, path: Path, state: TrainingState, due: int) -> None:
        def ranks_of(fit: Path) -> np.ndarray:
            table = read_kv(fit)
            return np.array([int(table[u]) for u in state.data.utts])

        new = ranks_of(path)
        if self.selected is None:  # the run's first fit, or a resumed run: the OR of this run's fits so far
            # (a run continuing epoch e, purl.init_mode=continue, has none before e)
            earlier = [p for p in map(self.path_of, range(0, due, self.every) if self.every > 0 else [])
                       if self.is_saved(p)]
            self.selected, self.n_fits = orgate_select([*map(ranks_of, earlier), new], self.top_k), len(earlier) + 1
        else:  # the OR in use stands for the earlier fits: only the new one is read
            self.selected, self.n_fits = self.selected | orgate_select([new], self.top_k), self.n_fits + 1
        self.sampler.set_selection(self.selected)
        line = (f"OR-Gate: {int(self.selected.sum())} of {len(self.selected)} utterances selected, "
                f"{len(self.sampler.drawable)} of {len(self.sampler.by_speaker)} speakers drawn (own label among "
                f"the {self.top_k} nearest centroids at {self.n_fits} fit(s), the last with the model of epoch {due}: "
                f"{int((new <= self.top_k).sum())} there)")
        if state.data.mislabelled is not None:
            line += (f"; {int((self.selected & state.data.mislabelled).sum())} of the selected mislabelled "
                     f"(of {int(state.data.mislabelled.sum())})")
        state.print(f"{line} ({path})")

    def on_epoch_end(self, state: TrainingState) -> dict | None:
        metrics = {"orgate_selected": int(self.selected.sum())}
        if state.data.mislabelled is not None:
            metrics["orgate_mislabelled"] = int((self.selected & state.data.mislabelled).sum())
        return metrics
