"""CHNS batches (Masztalski et al., Interspeech 2025; the original work's
ClusterBatchSampler): speakers are clustered by k-means of their centroid
embeddings, and a fraction ``hard_ratio`` of a batch's P speakers comes from
one cluster (more clusters, drawn at random, when one is too small), the rest
uniformly from the other speakers. Speakers of one cluster sound alike, so the
batch holds harder negatives than a uniform draw.

The clusters are computed with the model being trained when an epoch starts:
at the first epoch (the pretrained model, for a run started from
``purl.init_checkpoint``) and every ``chns.refresh_every`` epochs after.
Each is saved in a file (the stage's layout:
``exp/<name>/chns/spk2cluster_epoch<N>``); a resumed run reads it back, so it
draws the same batches as an uninterrupted one. This module holds the sampler
and the clustering; the training callback that reclusters at epoch starts is
purl.training.refit.ChnsClusters.
"""

from __future__ import annotations

import numpy as np

from purl.config import ConfigError
from purl.data.dataset import SpeakerBatchSampler
from purl.scoring import l2_normalise, speaker_means


def speaker_clusters(emb: np.ndarray, labels: np.ndarray, num_clusters: int, seed: int = 0) -> np.ndarray:
    """(U, D) embeddings, (U,) speaker indices 0..S-1 -> (S,) cluster of each speaker.

    k-means (sklearn, n_init=5 as the original) of the length-normalised means of
    each speaker's length-normalised embeddings.
    """
    centroids = l2_normalise(speaker_means(emb, labels, normalise=True))
    if not 1 <= num_clusters <= len(centroids):
        raise ConfigError(f"chns.num_clusters={num_clusters} must be between 1 and the {len(centroids)} speakers")
    from sklearn.cluster import KMeans  # here: sklearn takes most of a second to import

    return KMeans(n_clusters=num_clusters, n_init=5, random_state=seed).fit_predict(centroids).astype(np.int64)


class ClusterBatchSampler(SpeakerBatchSampler):
    """SpeakerBatchSampler whose P speakers are round(hard_ratio * P) from the
    clusters of ``set_clusters`` and the rest uniform; uniform until clusters are set."""

    def __init__(self, *args, hard_ratio: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        if self.replacement:
            raise ConfigError("chns.hard_ratio > 0 draws distinct speakers: it does not go with "
                              "data.sampler=with_replacement")
        if not 0 < hard_ratio <= 1:
            raise ConfigError(f"chns.hard_ratio={hard_ratio} must be in (0, 1] (0 turns CHNS off)")
        self.num_hard = max(1, round(hard_ratio * self.P))
        self.clusters: np.ndarray | None = None

    def set_clusters(self, clusters: np.ndarray) -> None:
        """(S,) cluster index of each speaker (the sampler's speaker order: label order)."""
        if len(clusters) != len(self.by_speaker):
            raise ValueError(f"{len(clusters)} cluster labels for {len(self.by_speaker)} speakers")
        self.clusters = np.asarray(clusters)
        self.members = [np.flatnonzero(self.clusters == c) for c in np.unique(self.clusters)]

    def draw_speakers(self, rng: np.random.Generator) -> np.ndarray:
        if self.clusters is None:
            return super().draw_speakers(rng)
        order = rng.permutation(len(self.members))
        pool, n = [], 0
        for c in order:  # the first cluster, then random others until there are enough
            pool.append(self.members[c])
            n += len(self.members[c])
            if n >= self.num_hard:
                break
        pool = np.concatenate(pool)
        hard = rng.choice(pool, self.num_hard, replace=False)
        rest = np.setdiff1d(np.arange(len(self.by_speaker)), hard)
        speakers = np.concatenate([hard, rng.choice(rest, self.P - self.num_hard, replace=False)])
        return rng.permutation(speakers)


def chns_sampler_or_plain(cfg: dict, *args, **kwargs) -> SpeakerBatchSampler:
    """The ``chns`` section of a config: a ClusterBatchSampler when hard_ratio > 0."""
    if cfg["hard_ratio"] <= 0:
        return SpeakerBatchSampler(*args, **kwargs)
    return ClusterBatchSampler(*args, hard_ratio=cfg["hard_ratio"], **kwargs)

