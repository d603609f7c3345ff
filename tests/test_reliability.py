"""Pair reliability (stage 4): estimators, on-the-fly weights, files, detection."""

import json

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from purl.reliability import (
    ESTIMATORS,
    META_FILE,
    Reliability,
    ReliabilitySettings,
    SpeakerIndex,
    SpeakerPairs,
    compare_fits,
    detection_metrics,
    fit_histogram,
    fit_sklearn,
    histogram_auc,
    normalise,
    plot_reliability,
    suspected_mislabelled,
    utterance_weights,
)
from purl.testing import simulate_embeddings


@pytest.fixture(scope="module")
def noisy_data():
    """20 speakers x 50 utterances, 64-dim, random unit centroids, 20 % relabelled."""
    return simulate_embeddings(np.full(20, 50), dim=64, noise_rate=0.2, between_cos=0.0, seed=7)


def same_label_pairs(labels, n, seed=0):
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(labels), size=4 * n)
    j = rng.integers(0, len(labels), size=4 * n)
    keep = (labels[i] == labels[j]) & (i != j)
    return i[keep][:n], j[keep][:n]


@pytest.fixture(scope="module")
def small_speakers():
    rng = np.random.default_rng(3)
    emb, noisy, _ = simulate_embeddings(rng.integers(30, 60, size=6), dim=64, seed=3)
    x = normalise(emb)
    return x, SpeakerIndex.from_labels(noisy)[0]


def test_histogram_em_agrees_with_sklearn_within_0_01(small_speakers):
    x, index = small_speakers
    # Small speakers with overlapping components converge slowly: run both EMs to
    # the optimum (and bins fine enough for ~1000 pairs) so there is one answer.
    # (One init each: the test is about the EM, not about picking among inits.)
    settings = ReliabilitySettings(tol=1e-10, max_iter=10_000, n_bins=1024, n_init=1)
    cmp = compare_fits(x, index, fit_histogram(SpeakerPairs(x, index), settings), fit_sklearn(SpeakerPairs(x, index), settings))
    assert np.allclose(cmp["loglik_a"], cmp["loglik_b"], atol=1e-5)
    assert cmp["max_abs_diff"].max() < 0.01


def test_early_stopped_histogram_em_is_never_worse_than_sklearn(small_speakers):
    x, index = small_speakers
    settings = ReliabilitySettings(tol=1e-3)  # the original work's stopping rule
    cmp = compare_fits(x, index, fit_histogram(SpeakerPairs(x, index), settings), fit_sklearn(SpeakerPairs(x, index), settings))
    # With overlapping components tol=1e-3 stops EM before the optimum, at a point
    # that depends on the init, so posteriors can differ on a flat likelihood ridge;
    # the likelihoods must not: ours is as good as sklearn's or better.
    assert np.all(cmp["loglik_a"] - cmp["loglik_b"] > -settings.tol)


@pytest.mark.parametrize("estimator", ["histogram", "bic", "global"])
def test_detection_auc_above_0_9_with_20_percent_flips(noisy_data, estimator):
    emb, noisy, true = noisy_data
    m = detection_metrics(Reliability.fit(emb, noisy, estimator), true)
    assert m["pair_auc"] > 0.9 and m["utt_auc"] > 0.9
    assert m["pair_f1"] > 0.8 and m["utt_f1"] > 0.8
    assert m["n_mislabelled"] == 200


def test_sklearn_estimator_detects_flips(noisy_data):
    emb, noisy, true = noisy_data
    m = detection_metrics(Reliability.fit(emb, noisy, "sklearn", {"tol": 1e-3, "n_init": 1}), true)  # quick
    assert m["pair_auc"] > 0.9


def test_evaluate_counts_match_brute_force(noisy_data):
    emb, noisy, true = noisy_data
    rel = Reliability.fit(emb, noisy)
    i, j = np.triu_indices(len(noisy), 1)
    same = noisy[i] == noisy[j]
    i, j = i[same], j[same]
    w, is_noisy = rel.weight(i, j), true[i] != true[j]
    m = detection_metrics(rel, true)
    assert m["n_pairs"] == len(i) and m["n_noisy_pairs"] == is_noisy.sum()
    assert m["pair_auc"] == pytest.approx(roc_auc_score(is_noisy, 1 - w), abs=1e-3)
    assert m["pair_recall"] == pytest.approx((is_noisy & (w < 0.5)).sum() / is_noisy.sum())
    assert m["frac_pairs_flagged"] == pytest.approx((w < 0.5).mean())


def test_histogram_auc_matches_roc_auc_score():
    rng = np.random.default_rng(0)
    neg, pos = rng.integers(0, 50, 300), rng.integers(10, 60, 200)  # integer scores: many ties
    edges = np.arange(61)
    auc = histogram_auc(np.histogram(neg, edges)[0], np.histogram(pos, edges)[0])
    expected = roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[neg, pos])
    assert auc == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("estimator", ["sklearn", "histogram", "bic"])
def test_speaker_with_fewer_than_3_utts_or_no_spread_gets_w_1(estimator):
    rng = np.random.default_rng(1)
    emb, labels, _ = simulate_embeddings(np.full(3, 40), dim=32, noise_rate=0.2, seed=1)
    tiny = rng.standard_normal((2, 32))           # 2 utterances, far apart
    flat = np.tile(rng.standard_normal(32), (6, 1))  # 6 identical utterances
    emb = np.vstack([emb, tiny, flat]).astype(np.float32)
    labels = np.r_[labels, [10, 10], [11] * 6]
    rel = Reliability.fit(emb, labels, estimator)
    n = len(labels)
    assert rel.weight([n - 8], [n - 7]) == pytest.approx([1.0])
    assert np.allclose(rel.weight([n - 6, n - 5], [n - 1, n - 2]), 1.0)
    assert rel.params.unit[[3, 4]].all()
    if estimator != "bic":  # bic may judge a small noisy speaker clean, too
        assert not rel.params.unit[:3].any()


def test_weight_matches_direct_computation(noisy_data):
    emb, noisy, _ = noisy_data
    rel = Reliability.fit(emb, noisy)
    i, j = same_label_pairs(noisy, 500)
    cos = emb[i] @ emb[j].T
    cos = np.diag(cos) / np.linalg.norm(emb[i], axis=1) / np.linalg.norm(emb[j], axis=1)
    p = rel.params
    s = np.searchsorted(rel.index.speakers, noisy[i])
    dens = p.weights[s] * norm.pdf(cos[:, None], p.means[s], np.sqrt(p.variances[s]))
    expected = dens[np.arange(len(s)), p.clean[s]] / dens.sum(axis=1)
    assert np.allclose(rel.weight(i, j), expected, atol=1e-6)
    assert np.allclose(rel.weight(i, j), rel.weight(j, i))


def test_weight_raises_for_pairs_of_different_labels(noisy_data):
    emb, noisy, _ = noisy_data
    rel = Reliability.fit(emb, noisy)
    i = np.flatnonzero(noisy == noisy[0])[0]
    j = np.flatnonzero(noisy != noisy[0])[0]
    with pytest.raises(ValueError, match="only same-label pairs"):
        rel.weight([i], [j])


def test_save_load_round_trip(noisy_data, tmp_path):
    emb, noisy, _ = noisy_data
    rel = Reliability.fit(emb, noisy, "bic", {"n_bins": 300})
    rel.save(tmp_path / "reliability")
    back = Reliability.load(tmp_path / "reliability")
    i, j = same_label_pairs(noisy, 300)
    assert np.array_equal(back.weight(i, j), rel.weight(i, j))
    assert back.estimator == "bic" and back.settings.n_bins == 300
    assert back.embeddings.dtype == np.float32
    assert np.array_equal(back.params.unit, rel.params.unit)
    meta = json.loads((tmp_path / "reliability" / META_FILE).read_text())
    assert meta["n_utts"] == len(noisy) and meta["settings"]["n_bins"] == 300
    assert not list((tmp_path / "reliability").glob("*.tmp"))


def test_load_of_incomplete_directory_says_to_rerun_stage_4(tmp_path):
    with pytest.raises(FileNotFoundError, match="rerun stage 4"):
        Reliability.load(tmp_path)


def test_bic_gives_w_1_for_a_clean_speaker():
    emb, true, _ = simulate_embeddings(np.full(3, 120), noise_rate=0.0, seed=2)
    noisy = true.copy()
    noisy[np.flatnonzero(true == 2)[:24]] = 1  # speaker 1 receives 24 foreign utterances
    rel = Reliability.fit(emb, noisy, "bic")
    assert rel.params.unit.tolist() == [True, False, True]  # speaker 2 lost some, still clean
    i, j = np.triu_indices(120, 1)
    assert np.all(rel.weight(i, j) == 1.0)
    # Counting pairs as independent, BIC (like the plain fit) splits the clean speaker.
    textbook = Reliability.fit(emb, noisy, "bic", {"bic_sample_size": "pairs"})
    assert not textbook.params.unit[0]


def test_global_estimator_shares_one_fit(noisy_data):
    emb, noisy, _ = noisy_data
    p = Reliability.fit(emb, noisy, "global").params
    assert np.all(p.means == p.means[0]) and not p.unit.any()


def test_suspected_mislabelled_lists_relabelled_utterances_first(noisy_data):
    emb, noisy, true = noisy_data
    idx, mean_w = suspected_mislabelled(Reliability.fit(emb, noisy), threshold=0.5)
    assert np.all(np.diff(mean_w) >= 0) and np.all(mean_w < 0.5)
    assert (noisy[idx] != true[idx]).mean() > 0.9


def test_unknown_estimator_or_setting_is_an_error(noisy_data):
    emb, noisy, _ = noisy_data
    with pytest.raises(ValueError, match="unknown estimator"):
        Reliability.fit(emb, noisy, "kmeans")
    with pytest.raises(ValueError, match="unknown setting"):
        Reliability.fit(emb, noisy, "histogram", {"bins": 10})
    assert set(ESTIMATORS) == {"sklearn", "histogram", "bic", "global"}


def test_plot_writes_png(noisy_data, tmp_path):
    emb, noisy, true = noisy_data
    rel = Reliability.fit(emb, noisy)
    plot_reliability(rel, tmp_path / "reliability.png", true, n_examples=3)
    assert (tmp_path / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob("*.tmp"))


# --- the original work's reliability (src/ncu_utils.py at e8886b6), transcribed ---

def original_gmm_dict(spk2utt: dict, embeddings_dict: dict, min_utterances: int = 3) -> dict:
    """fit_per_speaker_gmm (:193-240) with _compute_pairwise_similarities and _fit_gmm."""
    from sklearn.mixture import GaussianMixture

    gmm_dict = {}
    for speaker_id, files in spk2utt.items():
        valid = [embeddings_dict[f] for f in files if f in embeddings_dict]
        if len(valid) < min_utterances:
            gmm_dict[speaker_id] = None
            continue
        arr = np.array(valid)
        en = arr / (np.linalg.norm(arr, axis=1, keepdims=True) + 1e-8)
        sim = en @ en.T
        similarities = np.array([sim[i, j] for i in range(len(arr)) for j in range(i + 1, len(arr))])
        if len(similarities) < 3 or np.std(similarities) < 1e-6:
            gmm_dict[speaker_id] = None
            continue
        try:
            gmm = GaussianMixture(n_components=2, covariance_type="full", random_state=42, n_init=5, max_iter=300)
            gmm.fit(similarities.reshape(-1, 1))
            gmm_dict[speaker_id] = {"gmm": gmm, "clean_comp": int(np.argmax(gmm.means_.flatten()))}
        except Exception:
            gmm_dict[speaker_id] = None
    return gmm_dict


def original_p_clean(entry, emb1: np.ndarray, emb2: np.ndarray) -> float:
    """get_pair_p_clean (:246-269)."""
    if entry is None:
        return 1.0
    sim = np.dot(emb1, emb2) / ((np.linalg.norm(emb1) + 1e-8) * (np.linalg.norm(emb2) + 1e-8))
    return float(entry["gmm"].predict_proba([[sim]])[0, entry["clean_comp"]])


PAPER_SETTINGS = {"tol": 1e-3, "min_std": 1e-6, "cosine_dtype": "float32", "failed_fit": "w1"}


def test_paper_settings_give_the_original_works_pair_weights():
    """Simulated speakers (20% relabelled), one of 2 utterances, one with no
    spread, and one whose fit raises (a nan embedding: sklearn refuses nan, the
    original catches it): every same-label pair's w equals the original's."""
    rng = np.random.default_rng(5)
    emb, labels, _ = simulate_embeddings(rng.integers(8, 40, size=8), dim=48, noise_rate=0.2, seed=5)
    broken = rng.standard_normal((5, 48)).astype(np.float32)
    broken[2] = np.nan
    emb = np.vstack([emb, rng.standard_normal((2, 48)), np.tile(rng.standard_normal(48), (4, 1)), broken])
    emb = emb.astype(np.float32)
    labels = np.r_[labels, [20, 20], [21] * 4, [22] * 5]
    rel = Reliability.fit(emb, labels, "sklearn", PAPER_SETTINGS)

    spk2utt = {s: [int(u) for u in np.flatnonzero(labels == s)] for s in np.unique(labels)}
    gmms = original_gmm_dict(spk2utt, dict(enumerate(emb)))
    i, j = np.array([(a, b) for utts in spk2utt.values() for n, a in enumerate(utts) for b in utts[n + 1:]]).T
    expected = np.array([original_p_clean(gmms[labels[a]], emb[a], emb[b]) for a, b in zip(i, j)])
    w = rel.weight(i, j)
    assert np.abs(w - expected).max() < 2e-6  # float64 cosines: 3.5e-6 here
    assert gmms[22] is None and rel.params.failed.tolist() == [False] * 10 + [True]
    assert sum(g is None for g in gmms.values()) == rel.params.unit.sum() == 3
    assert ((expected > 0.5) == (w > 0.5)).all() and (expected < 0.5).sum() > 10


def test_a_fit_that_raises_stops_the_default_settings_naming_the_speaker():
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((6, 16)).astype(np.float32)
    emb[3] = np.nan
    message = r"GMM fit of speaker 7 \(6 utterances\) failed: Input X contains NaN. \(reliability.failed_fit=w1 "
    with pytest.raises(ValueError, match=message):
        Reliability.fit(emb, np.full(6, 7), "sklearn")


def test_paper_settings_keep_float32_cosines_and_the_defaults_float64(noisy_data):
    emb, noisy, _ = noisy_data
    i, j = same_label_pairs(noisy, 50)
    assert Reliability.fit(emb, noisy, "sklearn", PAPER_SETTINGS).cosine(i, j).dtype == np.float32
    assert Reliability.fit(emb, noisy, "histogram").cosine(i, j).dtype == np.float64


@pytest.mark.parametrize("estimator", ["histogram", "bic"])
def test_speakers_all_too_small_to_fit_keep_every_pair(estimator):
    emb, labels, _ = simulate_embeddings([2, 2], dim=16, noise_rate=0.0)
    rel = Reliability.fit(emb, labels, estimator)
    assert np.all(utterance_weights(rel) == 1)
