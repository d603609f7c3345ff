"""OR-Gate selection adapted to SupCon: the rank of the own label among speaker
centroids, the OR over fits, the sampler that draws only the selected
utterances."""

from __future__ import annotations

import numpy as np
import pytest

from purl.config import ConfigError
from purl.data.dataset import SpeakerBatchSampler
from purl.orgate import OrGateError, orgate_select, own_label_rank
from purl.testing import simulate_embeddings


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
