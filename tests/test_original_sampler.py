"""data.sampler=with_replacement, the loader of the original's ECAPA PURL update,
and the PURL losses on its batches, whose speakers repeat.

The original (e8886b6): ``use_unique_batch_sampler`` is commented out in
configs/ncu_30ep.yaml, so src/data/datamodules.py:444-465 builds a plain
DataLoader (batch 300 pairs, no drop_last) over VoxCelebNCUDataset of
samples_per_epoch // 2 = 500,000 items, each a speaker drawn with
random.choice and two distinct files of it (src/data/datasets.py:155-160);
src/trainers.py:450-552 gives the soft, hard and ascent losses.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from purl.config import ConfigError, load_config
from purl.data.chns import ClusterBatchSampler
from purl.data.dataset import SpeakerBatchSampler
from purl.losses import PurlLoss


def labels_of(num_speakers: int, utts: int) -> np.ndarray:
    return np.repeat(np.arange(num_speakers), utts)


def test_with_replacement_has_the_originals_epoch_of_500000_pairs_and_its_partial_last_batch():
    sampler = SpeakerBatchSampler(labels_of(5994, 2), 300, 2, 1_000_000, seed=0, sampler="with_replacement")
    assert sampler.steps_per_epoch == 1667  # ceil(500,000 / 300)
    assert [sampler.rows_at(s) for s in (0, 1665, 1666)] == [300, 300, 200]
    assert sampler.utts_per_rank(1666) == [400] and sampler.utts_per_rank(0) == [600]
    distinct = SpeakerBatchSampler(labels_of(5994, 2), 300, 2, 1_000_000, seed=0)
    assert distinct.steps_per_epoch == 1667 and distinct.rows_at(1666) == 300


def test_with_replacement_repeats_speakers_and_keeps_each_rows_utterances_distinct():
    labels = labels_of(5, 4)
    sampler = SpeakerBatchSampler(labels, 4, 2, 28, seed=3, sampler="with_replacement")
    batches = list(sampler)
    assert [len(b) for b in batches] == [8, 8, 8, 4]  # 14 pairs: 3 x 4 and the last 2
    repeated = 0
    for batch in batches:
        utts = np.array([u for u, _ in batch]).reshape(-1, 2)
        assert (labels[utts[:, 0]] == labels[utts[:, 1]]).all() and (utts[:, 0] != utts[:, 1]).all()
        repeated += len(np.unique(labels[utts[:, 0]])) < len(utts)
    assert repeated > 0
    # more rows than speakers is fine when speakers repeat
    SpeakerBatchSampler(labels, 12, 2, 48, seed=0, sampler="with_replacement")
    with pytest.raises(ConfigError, match="only 5 speakers"):
        SpeakerBatchSampler(labels, 12, 2, 48, seed=0)


def test_with_replacement_splits_every_batch_over_the_processes_the_last_too():
    labels = labels_of(7, 3)
    kwargs = dict(speakers_per_batch=5, utts_per_speaker=2, samples_per_epoch=26, seed=1, sampler="with_replacement")
    whole = list(SpeakerBatchSampler(labels, **kwargs))
    shares = [list(SpeakerBatchSampler(labels, rank=r, world_size=2, **kwargs)) for r in (0, 1)]
    sizes = SpeakerBatchSampler(labels, rank=0, world_size=2, **kwargs)
    assert [len(b) for b in whole] == [10, 10, 6]
    for step, batch in enumerate(whole):
        assert shares[0][step] + shares[1][step] == batch
        assert sizes.utts_per_rank(step) == [len(shares[0][step]), len(shares[1][step])]


def test_distinct_sampler_draws_what_it_drew_before():
    """The default's stream, as the sampler drew it before data.sampler existed."""
    labels = labels_of(9, 3)
    sampler = SpeakerBatchSampler(labels, 4, 2, 40, seed=5)
    sampler.set_epoch(2)
    rng = np.random.default_rng([5, 2])
    by_speaker = [np.flatnonzero(labels == s) for s in range(9)]
    for batch in sampler:
        speakers = rng.choice(9, 4, replace=False)
        utts = [by_speaker[s][rng.choice(3, 2, replace=False)] for s in speakers]
        seeds = rng.integers(0, 2**63 - 1, size=(4, 2))
        assert batch == list(zip(np.concatenate(utts).tolist(), seeds.ravel().tolist()))


def test_chns_and_unknown_samplers_are_refused():
    with pytest.raises(ConfigError, match="with_replacement"):
        ClusterBatchSampler(labels_of(6, 2), 4, 2, 16, seed=0, sampler="with_replacement", hard_ratio=0.5)
    with pytest.raises(ConfigError, match="data.sampler='unique'"):
        SpeakerBatchSampler(labels_of(6, 2), 4, 2, 16, seed=0, sampler="unique")


# ---------------------------------------------------------------------------
# the losses: a transcription of the original's

def original_supcon(emb_a, emb_b, labels, temperature=0.1):
    """src/losses.py SupConLoss.forward (margin 0)."""
    features = torch.stack([emb_a, emb_b], dim=1)
    batch_size = features.shape[0]
    speaker_ids = labels.contiguous().view(-1, 1)
    mask = torch.eq(speaker_ids, speaker_ids.T).float()
    contrast_feature = F.normalize(torch.cat(torch.unbind(features, dim=1), dim=0), dim=1)
    anchor_dot_contrast = torch.matmul(contrast_feature, contrast_feature.T) / temperature
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = torch.clamp(anchor_dot_contrast - logits_max.detach(), min=-50.0, max=50.0)
    mask = mask.repeat(2, 2)
    logits_mask = torch.ones_like(mask)
    diag = torch.arange(batch_size * 2)
    logits_mask[diag, diag] = 0
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True).clamp(min=1e-8))
    mean_log_prob_pos = (mask * log_prob).sum(1) / torch.clamp(mask.sum(1), min=1e-8)
    return (-1 * mean_log_prob_pos).view(2, batch_size).mean()


def original_ncu_loss(kind, emb1, emb2, labels, p_clean, alpha=0.5, threshold=0.5):
    """src/trainers.py _training_step_hard / _soft / _ascent."""
    clean_mask = p_clean > threshold
    noisy_mask = ~clean_mask
    loss = torch.tensor(0.0)
    if kind == "ascent":
        if clean_mask.sum() > 1:
            loss = loss + original_supcon(emb1[clean_mask], emb2[clean_mask], labels[clean_mask])
        if noisy_mask.sum() > 1:
            loss = loss + alpha * -original_supcon(emb1[noisy_mask], emb2[noisy_mask], labels[noisy_mask])
        return loss
    if clean_mask.sum() > 1:
        loss = loss + original_supcon(emb1[clean_mask], emb2[clean_mask], labels[clean_mask])
    if kind == "hard":
        if noisy_mask.sum() > 0:
            sim = (F.normalize(emb1[noisy_mask], dim=1) * F.normalize(emb2[noisy_mask], dim=1)).sum(dim=1)
            loss = loss + alpha * sim.mean()
        return loss
    cos_sim = (F.normalize(emb1, dim=1) * F.normalize(emb2, dim=1)).sum(dim=1)
    return loss + alpha * ((1.0 - p_clean) * cos_sim).mean()


# 8 pairs; speakers 0, 1 and 2 fill two or three rows each
LABELS = [0, 1, 0, 2, 1, 0, 3, 2]
P_CLEAN = {
    "mixed": [0.9, 0.2, 0.8, 0.95, 0.3, 0.1, 0.7, 0.4],   # clean rows 0, 2 (speaker 0), 3, 6; noisy 1, 4 (speaker 1)
    "one_clean_one_noisy": [0.9, 0.6, 0.8, 0.7, 0.55, 0.1, 0.99, 0.51],
    "all_clean": [0.9] * 8,
}


@pytest.mark.parametrize("kind", ["soft", "hard", "ascent"])
@pytest.mark.parametrize("case", sorted(P_CLEAN))
def test_purl_losses_on_repeated_speakers_equal_the_originals(kind, case):
    torch.manual_seed(0)
    n = len(LABELS)
    emb1 = torch.randn(n, 16, requires_grad=True)
    emb2 = torch.randn(n, 16, requires_grad=True)
    labels = torch.tensor(LABELS)
    p_clean = torch.tensor(P_CLEAN[case])
    expected = original_ncu_loss(kind, emb1, emb2, labels, p_clean)
    want = torch.autograd.grad(expected, [emb1, emb2])

    # here: row r is samples 2r, 2r+1; w of a row's two samples is its p_clean, and the
    # cross-row entries of one speaker get other values, which the rows' loss ignores
    embeddings = torch.stack([emb1, emb2], dim=1).reshape(2 * n, 16)
    sample_labels = labels.repeat_interleave(2)
    groups = torch.arange(2 * n) // 2
    w = torch.from_numpy(np.random.default_rng(1).uniform(size=(2 * n, 2 * n)).astype(np.float32))
    w = (w + w.T) / 2
    sample = torch.arange(2 * n)
    w[sample, sample ^ 1] = p_clean.repeat_interleave(2)  # sample i's partner: i ^ 1
    loss_fn = PurlLoss(kind, alpha=0.5, threshold=0.5, temperature=0.1)
    ours, metrics = loss_fn(embeddings, sample_labels, w, groups)
    got = torch.autograd.grad(ours, [emb1, emb2])
    assert ours.item() == pytest.approx(expected.item(), abs=1e-5)
    for g, e in zip(got, want):
        assert torch.allclose(g, e, atol=1e-6)
    assert metrics["n_clean"] == int((p_clean > 0.5).sum()) and metrics["n_clean"] + metrics["n_noisy"] == n


def test_rows_loss_equals_the_label_loss_when_speakers_are_distinct():
    """With one row per speaker, the rows' loss is the loss the distinct sampler's batches get."""
    torch.manual_seed(1)
    embeddings = torch.randn(12, 8)
    labels = torch.arange(6).repeat_interleave(2)
    groups = torch.arange(12) // 2
    w = torch.ones(12, 12)
    w[torch.arange(12), torch.arange(12) ^ 1] = torch.tensor([0.9, 0.2, 0.8, 0.3, 0.6, 0.1]).repeat_interleave(2)
    for kind in PurlLoss.KINDS:
        loss_fn = PurlLoss(kind)
        assert loss_fn(embeddings, labels, w, groups)[0].item() == pytest.approx(loss_fn(embeddings, labels, w)[0].item(),
                                                                                abs=1e-6)


def test_a_purl_run_with_the_originals_sampler(tmp_path, tiny_config):
    """PURL training with data.sampler=with_replacement: 14 pairs an epoch in batches of 4, 4, 4, 2."""
    from purl.pair_weights import pair_weights_from_dir
    from purl.stages.exp_layout import TrainingOutputs
    from purl.training.loop import Trainer
    from purl.training.refit import PurlPairWeights
    from tests.test_trainer import purl_setup

    data, rel_dir, _ = purl_setup(tmp_path, tiny_config)
    config = load_config(tiny_config, ["loss.type=soft", f"purl.reliability={rel_dir}", "data.sampler=with_replacement",
                                       "data.samples_per_epoch=28", "optim.epochs=1", "train.average_last=1"])
    outputs = TrainingOutputs(tmp_path / "exp")
    weights = PurlPairWeights(pair_weights_from_dir(rel_dir, data), reestimate_every=0,
                              refit_dir=outputs.reestimated_weights_dir)
    trainer = Trainer(config, data, outputs, callbacks=[weights], show_progress=False)
    try:
        assert trainer.sampler.steps_per_epoch == 4
        trainer.train()
    finally:
        trainer.close()
    header, *rows = (tmp_path / "exp" / "train.csv").read_text().splitlines()
    assert len(rows) == 4 and "n_clean" in header
    column = header.split(",").index("n_clean"), header.split(",").index("n_noisy")
    last = rows[-1].split(",")
    assert float(last[column[0]]) + float(last[column[1]]) == 2  # the last batch's 2 rows
