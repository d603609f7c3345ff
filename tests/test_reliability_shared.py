"""Stage 4's estimators sharing work through one SpeakerPairs give the results
of separate fits."""

import dataclasses

import numpy as np

from purl.reliability import Reliability, SpeakerPairs
from purl.testing import simulate_embeddings


def _same_params(a, b) -> None:
    for field in dataclasses.fields(a):
        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name), err_msg=field.name)


def test_fits_sharing_one_speaker_pairs_equal_separate_fits():
    # Speakers of 2 utterances get w = 1; the others are fitted (some of them
    # bic turns to one component): every path of the shared fit is taken.
    emb, labels, _ = simulate_embeddings(np.array([2, 30, 40, 60, 45]), dim=32, noise_rate=0.2, seed=5)
    pairs = SpeakerPairs.from_embeddings(emb, labels, shared=True)
    shared = [Reliability.fit_pairs(pairs, name) for name in ("histogram", "bic", "global")]
    for fit in shared:
        _same_params(fit.params, Reliability.fit(emb, labels, fit.estimator).params)
    assert shared[0].params.unit.sum() < shared[1].params.unit.sum()  # bic's choice did not leak into histogram's


def test_shared_speaker_pairs_refit_for_other_settings():
    emb, labels, _ = simulate_embeddings(np.array([30, 40, 50]), dim=32, noise_rate=0.2, seed=6)
    pairs = SpeakerPairs.from_embeddings(emb, labels, shared=True)
    Reliability.fit_pairs(pairs, "histogram", {"n_bins": 64})
    again = Reliability.fit_pairs(pairs, "bic", {"n_bins": 256})
    _same_params(again.params, Reliability.fit(emb, labels, "bic", {"n_bins": 256}).params)


def test_plot_counts_from_the_evaluation_pass_equal_the_plots_own_scan():
    from purl.reliability import PlotCounts, detection_metrics_of_fits, iter_speaker_blocks

    emb, labels, true = simulate_embeddings(np.array([2, 30, 40, 60, 45]), dim=32, noise_rate=0.2, seed=8)
    rel = Reliability.fit(emb, labels, "histogram")
    for truth in (true, None):
        gathered = PlotCounts(rel.params)
        detection_metrics_of_fits([rel], truth, 0.5, gathered)
        own = PlotCounts(rel.params)
        codes = None if truth is None else np.unique(truth, return_inverse=True)[1]
        for s, utts, gram, upper in iter_speaker_blocks(rel.embeddings, rel.index):
            cos = gram[upper]
            noisy = np.zeros(cos.size, bool) if codes is None else (codes[utts][:, None] != codes[utts][None, :])[upper]
            own.add(s, cos, noisy)
        assert len(gathered.examples) == 4 and gathered.total.sum() == rel.params.n_pairs.sum()
        np.testing.assert_array_equal(gathered.total, own.total)
        assert gathered.example_cos.keys() == own.example_cos.keys()
        for s, (cos, noisy) in own.example_cos.items():
            np.testing.assert_array_equal(gathered.example_cos[s][0], cos)
            np.testing.assert_array_equal(gathered.example_cos[s][1], noisy)


def test_fits_and_evaluation_in_threads_equal_one_threads_bit_for_bit(monkeypatch):
    """Speakers (EM rows) split across threads: every fitted number, every
    metric and the plot's counts are those of one thread, exactly."""
    from purl.reliability import PlotCounts, detection, detection_metrics_of_fits, estimators, gmm

    emb, labels, true = simulate_embeddings(np.array([2, 30, 40, 60, 45, 25, 33, 5]), dim=32, noise_rate=0.2, seed=9)
    runs = []
    for threads in (1, 3):
        for module in (gmm, estimators, detection):
            monkeypatch.setattr(module, "work_threads", lambda threads=threads: threads)
        fits = [Reliability.fit(emb, labels, name) for name in ("histogram", "bic", "global")]
        shared = [Reliability.fit(fits[0].embeddings, labels, f.estimator, normalised=True) for f in fits]
        counts = PlotCounts(shared[0].params)
        runs.append((fits, detection_metrics_of_fits(shared, true, 0.5, counts), counts))
    (fits_1, metrics_1, counts_1), (fits_3, metrics_3, counts_3) = runs
    for a, b in zip(fits_1, fits_3):
        _same_params(a.params, b.params)
    for (fig_a, w_a), (fig_b, w_b) in zip(metrics_1, metrics_3):
        assert fig_a == fig_b
        np.testing.assert_array_equal(w_a, w_b)
    np.testing.assert_array_equal(counts_1.total, counts_3.total)
    assert counts_1.example_cos.keys() == counts_3.example_cos.keys()
