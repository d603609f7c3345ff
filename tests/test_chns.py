"""CHNS batches: k-means of speaker centroids, batches with a cluster's speakers,
re-clustering during training, and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from purl.config import load_config
from purl.data.chns import ClusterBatchSampler, speaker_clusters
from purl.data.datadir import read_kv
from purl.stages.exp_layout import TrainingOutputs
from purl.training.checkpoint import load_checkpoint
from purl.training.loop import Trainer
from tests.conftest import write_feature_dir


def test_speaker_clusters_group_speakers_with_similar_centroids():
    rng = np.random.default_rng(0)
    groups = rng.normal(size=(3, 16)) * 5
    group_of = np.repeat([0, 1, 2], 4)                      # 12 speakers in 3 groups
    labels = np.repeat(np.arange(12), 5)                    # 5 utterances each
    emb = groups[group_of[labels]] + rng.normal(size=(12, 16))[labels] + 0.3 * rng.normal(size=(60, 16))
    clusters = speaker_clusters(emb, labels, 3)
    assert clusters.shape == (12,)
    assert all(len(set(clusters[group_of == g])) == 1 for g in range(3)) and len(set(clusters)) == 3
    with pytest.raises(ValueError, match="chns.num_clusters=13 must be between 1 and the 12 speakers"):
        speaker_clusters(emb, labels, 13)


def sampler(labels, P, hard_ratio=0.5):
    return ClusterBatchSampler(labels, P, 2, samples_per_epoch=P * 2 * 50, seed=3, hard_ratio=hard_ratio)


def test_batches_take_their_hard_share_from_one_cluster():
    labels = np.repeat(np.arange(50), 3)
    s = sampler(labels, 8)
    s.set_clusters(np.repeat(np.arange(5), 10))             # 5 clusters of 10 speakers
    for batch in s:
        speakers = labels[[u for u, _ in batch]]
        distinct = np.unique(speakers)
        assert len(distinct) == 8
        assert np.bincount(s.clusters[distinct]).max() >= 4  # round(0.5 * 8) from one cluster


def test_small_clusters_are_pooled_and_speakers_stay_distinct():
    labels = np.repeat(np.arange(20), 2)
    s = sampler(labels, 10, hard_ratio=0.8)
    s.set_clusters(np.repeat(np.arange(10), 2))             # clusters of 2, 8 hard speakers wanted
    for batch in s:
        assert len(np.unique(labels[[u for u, _ in batch]])) == 10
    with pytest.raises(ValueError, match="chns.hard_ratio=0 must be in"):
        sampler(labels, 10, hard_ratio=0)


def test_training_with_chns_reclusters_and_resumes_exactly(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")             # 6 speakers; batches of 4 speakers x 2
    overrides = ["chns.hard_ratio=0.5", "chns.num_clusters=2", "chns.refresh_every=1"]

    def train(exp, stop_at_step=None):
        trainer = Trainer(load_config(tiny_config, overrides), data, TrainingOutputs(exp), show_progress=False)
        try:
            assert isinstance(trainer.sampler, ClusterBatchSampler)
            return trainer.train(stop_at_step=stop_at_step)
        finally:
            trainer.close()

    straight = train(tmp_path / "straight")
    for epoch in (0, 1):
        table = read_kv(tmp_path / "straight" / "chns" / f"spk2cluster_epoch{epoch}")
        assert sorted(table) == [f"spk{s:02d}" for s in range(6)] and set(table.values()) == {"0", "1"}
    assert train(tmp_path / "resumed", stop_at_step=6) is None  # killed in the second epoch
    resumed = train(tmp_path / "resumed")
    a, b = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
