"""OR-Gate selection adapted to SupCon: the rank of the own label among speaker
centroids, the OR over fits, the sampler that draws only the selected
utterances, training with it (and resuming it exactly). Its keys' range checks
are in test_bad_inputs.py."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from purl.config import ConfigError, load_config
from purl.data.datadir import DataDir, read_kv, utt2spk_to_spk2utt, write_kv
from purl.data.dataset import ChunkDataset, SpeakerBatchSampler
from purl.orgate import OrGateError, orgate_select, own_label_rank
from purl.stages.exp_layout import TrainingOutputs
from purl.testing import simulate_embeddings
from purl.training.callbacks import TrainingCallback
from purl.training.checkpoint import load_checkpoint
from purl.training.loop import Trainer
from tests.conftest import write_feature_dir


def test_the_own_label_rank_selects_correct_labels_and_leaves_most_wrong_ones_out():
    emb, noisy, true = simulate_embeddings([20] * 30, dim=64, noise_rate=0.2, seed=0)
    wrong = noisy != true
    rank = own_label_rank(emb, noisy, chunk=100)  # chunks give the same ranks as one pass
    assert np.array_equal(rank, own_label_rank(emb, noisy)) and rank.min() == 1 and rank.max() <= 30
    nearest, five = orgate_select([rank], 1), orgate_select([rank], 5)
    assert nearest[~wrong].mean() > 0.95 and nearest[wrong].mean() < 0.1
    # a larger k keeps everything k = 1 keeps, and more of the mislabelled, though still a minority
    assert np.all(five[nearest]) and five[~wrong].mean() >= nearest[~wrong].mean()
    assert nearest[wrong].mean() < five[wrong].mean() < 0.5
    with pytest.raises(OrGateError, match="must be"):
        own_label_rank(emb, noisy[:-1])


def test_an_utterance_selected_at_one_fit_stays_selected():
    first, second = np.array([1, 4, 2, 7]), np.array([3, 1, 5, 6])
    assert orgate_select([first], 2).tolist() == [True, False, True, False]
    assert orgate_select([first, second], 2).tolist() == [True, True, True, False]
    assert orgate_select([second, first], 2).tolist() == [True, True, True, False]
    with pytest.raises(OrGateError, match="top_k=0"):
        orgate_select([first], 0)
    with pytest.raises(OrGateError, match="no fit"):
        orgate_select([], 2)


def test_the_sampler_draws_only_selected_utterances_of_speakers_with_two():
    labels = np.repeat(np.arange(6), 4)                      # 6 speakers x 4 utterances
    plain = SpeakerBatchSampler(labels, 3, 2, samples_per_epoch=60, seed=1)
    everyone = SpeakerBatchSampler(labels, 3, 2, samples_per_epoch=60, seed=1)
    everyone.set_selection(np.ones(len(labels), bool))       # all selected: the very same batches
    assert list(plain) == list(everyone)
    selected = np.ones(len(labels), bool)
    selected[[0, 1, 2]] = False                              # speaker 0 keeps one: not drawn
    selected[[4, 5]] = False                                 # speaker 1 keeps two
    s = SpeakerBatchSampler(labels, 3, 2, samples_per_epoch=600, seed=1)
    s.set_selection(selected)
    drawn = np.array([u for batch in s for u, _ in batch])
    assert selected[drawn].all() and set(drawn) == set(np.flatnonzero(selected)) - {3}
    with pytest.raises(ConfigError, match=r"only 2 speakers .*raise orgate.top_k"):
        s.set_selection(labels >= 4)


def with_noise(data):
    """``data`` with two utterances moved to another speaker; the truth in utt2truespk."""
    utt2spk = dict(DataDir(data).utt2spk)
    write_kv(data / "utt2truespk", utt2spk)
    utt2spk["spk00-u00"], utt2spk["spk02-u01"] = "spk01", "spk03"
    write_kv(data / "utt2spk", utt2spk)
    write_kv(data / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    return data


class EpochMarks(TrainingCallback):
    """The epoch each drawn chunk belongs to."""

    def __init__(self, drawn):
        self.drawn = drawn

    def on_epoch_start(self, state):
        self.drawn.append((state.epoch, []))


def test_training_with_orgate_draws_only_the_selection_and_resumes_exactly(tmp_path, tiny_config, monkeypatch):
    data = with_noise(write_feature_dir(tmp_path / "data"))  # 6 speakers; batches of 4 speakers x 2
    drawn: list[tuple[int, list[int]]] = []
    getitem = ChunkDataset.__getitem__

    def noting(self, item):
        drawn[-1][1].append(item[0])
        return getitem(self, item)

    monkeypatch.setattr(ChunkDataset, "__getitem__", noting)

    def train(exp, stop_at_step=None):
        config = load_config(tiny_config, ["orgate.top_k=2", "orgate.refit_every=1"])
        trainer = Trainer(config, data, TrainingOutputs(exp), callbacks=[EpochMarks(drawn)], show_progress=False)
        try:
            return trainer, trainer.train(stop_at_step=stop_at_step)
        finally:
            trainer.close()

    trainer, straight = train(tmp_path / "straight")
    utts, mislabelled = trainer.data.utts, trainer.data.mislabelled
    assert mislabelled.sum() == 2
    ranks = [read_kv(TrainingOutputs(tmp_path / "straight").orgate_ranks(e)) for e in (0, 1)]
    ranks = [np.array([int(r[u]) for u in utts]) for r in ranks]
    selection = [orgate_select(ranks[:e + 1], 2) for e in (0, 1)]  # the OR up to each epoch
    assert [e for e, _ in drawn] == [0, 1]
    for epoch, items in drawn:
        assert items and selection[epoch][items].all()
    rows = selection_columns(tmp_path / "straight")
    assert rows == [(int(s.sum()), int((s & mislabelled).sum())) for s in selection]

    assert train(tmp_path / "resumed", stop_at_step=6)[1] is None  # killed in the second epoch
    _, resumed = train(tmp_path / "resumed")  # the selection of epoch 1 rebuilt from the two fits saved
    a, b = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert selection_columns(tmp_path / "resumed") == rows


def selection_columns(exp):
    """(orgate_selected, orgate_mislabelled) of each row of an exp dir's epochs.csv."""
    with open(exp / "epochs.csv") as f:
        return [(int(r["orgate_selected"]), int(r["orgate_mislabelled"])) for r in csv.DictReader(f)]


def test_a_run_continuing_an_epoch_checkpoint_ors_its_own_fits_only(tmp_path, tiny_config):
    """purl.init_mode=continue starts at the checkpoint's epoch: there are no fits before it."""
    data = with_noise(write_feature_dir(tmp_path / "data"))
    pretrain = Trainer(load_config(tiny_config, ["optim.epochs=1"]), data, TrainingOutputs(tmp_path / "pretrain"),
                       show_progress=False)
    pretrain.train()
    pretrain.close()
    config = load_config(tiny_config, ["orgate.top_k=2", "purl.init_mode=continue",
                                       f"purl.init_checkpoint={tmp_path / 'pretrain' / 'models' / 'epoch_1.pt'}"])
    trainer = Trainer(config, data, TrainingOutputs(tmp_path / "exp"), show_progress=False)
    trainer.train()
    trainer.close()
    assert sorted(p.name for p in (tmp_path / "exp" / "orgate").iterdir()) == ["utt2rank_epoch1"]
    assert len(selection_columns(tmp_path / "exp")) == 1


def test_orgate_and_chns_are_refused_together(tmp_path, tiny_config):
    data = write_feature_dir(tmp_path / "data")
    config = load_config(tiny_config, ["orgate.top_k=2", "chns.hard_ratio=0.5", "chns.num_clusters=2"])
    with pytest.raises(ConfigError, match="orgate.top_k=2 does not go with chns.hard_ratio"):
        Trainer(config, data, TrainingOutputs(tmp_path / "exp"), show_progress=False)
