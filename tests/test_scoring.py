import numpy as np
import pytest

from purl.scoring import as_norm, cosine_score, score_trials, speaker_means


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_cosine_score_matches_naive_loop_with_mean_subtraction():
    rng = np.random.default_rng(0)
    enroll, test, mean = rng.normal(size=(20, 8)), rng.normal(size=(20, 8)), rng.normal(size=8)
    expected = [_cos(e - mean, t - mean) for e, t in zip(enroll, test)]
    np.testing.assert_allclose(cosine_score(enroll, test, mean=mean), expected, rtol=1e-12)
    expected = [_cos(e, t) for e, t in zip(enroll, test)]
    np.testing.assert_allclose(cosine_score(enroll, test), expected, rtol=1e-12)


def test_score_trials_matches_naive_loop_across_chunks():
    rng = np.random.default_rng(1)
    emb, mean = rng.normal(size=(30, 16)), rng.normal(size=16)
    idx1, idx2 = rng.integers(0, 30, size=(2, 103))
    expected = [_cos(emb[i] - mean, emb[j] - mean) for i, j in zip(idx1, idx2)]
    got = score_trials(emb, idx1, idx2, mean=mean, chunk_size=10)  # 11 chunks, last partial
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_score_trials_keeps_float32_embeddings_in_float32():
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(10, 4)).astype(np.float32)
    assert score_trials(emb, [0, 1], [2, 3]).dtype == np.float32


def test_score_trials_rejects_out_of_range_rows():
    emb = np.ones((5, 3))
    with pytest.raises(ValueError, match="only 5 rows"):
        score_trials(emb, [0, 5], [1, 2])
    with pytest.raises(ValueError, match="equally long"):
        score_trials(emb, [0, 1], [1])


def _as_norm_naive(emb, idx1, idx2, cohort, top_k, mean, exclude=None):
    """AS-Norm straight from the formula, one trial at a time; ``exclude``:
    the cohort row each embedding leaves out (-1: none)."""
    out = []
    for i, j in zip(idx1, idx2):
        e, t = emb[i] - mean, emb[j] - mean
        s = _cos(e, t)
        stats = []
        for row, u in ((i, e), (j, t)):
            kept = cohort if exclude is None or exclude[row] < 0 else np.delete(cohort, exclude[row], axis=0)
            cohort_scores = np.array([_cos(u, c - mean) for c in kept])
            top = np.sort(cohort_scores)[::-1][:top_k]
            stats.append((top.mean(), top.std()))
        (mu_e, sd_e), (mu_t, sd_t) = stats
        out.append(0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t))
    return np.array(out)


@pytest.mark.parametrize("top_k", [5, 40, 1000])  # 1000 > C: capped at the cohort size
def test_as_norm_matches_per_trial_formula(top_k):
    rng = np.random.default_rng(3)
    emb, cohort, mean = rng.normal(size=(25, 12)), rng.normal(size=(40, 12)), rng.normal(size=12)
    idx1, idx2 = rng.integers(0, 25, size=(2, 60))
    scores = score_trials(emb, idx1, idx2, mean=mean)
    got = as_norm(scores, idx1, idx2, emb, cohort, top_k=top_k, mean=mean, chunk_size=7)
    expected = _as_norm_naive(emb, idx1, idx2, cohort, top_k, mean)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("top_k", [5, 39, 1000])  # 39 and 1000: every row the exclusion leaves
def test_as_norm_leaves_out_each_utterances_own_cohort_row(top_k):
    rng = np.random.default_rng(4)
    emb, cohort, mean = rng.normal(size=(25, 12)), rng.normal(size=(40, 12)), rng.normal(size=12)
    exclude = rng.integers(-1, 40, size=25)
    idx1, idx2 = rng.integers(0, 25, size=(2, 60))
    scores = score_trials(emb, idx1, idx2, mean=mean)
    got = as_norm(scores, idx1, idx2, emb, cohort, top_k=top_k, mean=mean, chunk_size=7, cohort_exclude=exclude)
    expected = _as_norm_naive(emb, idx1, idx2, cohort, top_k, mean, exclude)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    # without exclusions: what as_norm gives without the argument, to the bit
    none = as_norm(scores, idx1, idx2, emb, cohort, top_k=top_k, mean=mean, chunk_size=7,
                   cohort_exclude=np.full(25, -1))
    np.testing.assert_array_equal(none, as_norm(scores, idx1, idx2, emb, cohort, top_k=top_k, mean=mean,
                                                chunk_size=7))


def test_as_norm_rejects_cohort_of_wrong_dimension():
    emb = np.ones((4, 3))
    with pytest.raises(ValueError, match="cohort"):
        as_norm(np.zeros(1), [0], [1], emb, np.ones((10, 5)))


def test_speaker_means_averages_each_speakers_rows():
    emb = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0], [5.0, 5.0]])
    spk = np.array([0, 0, 2, 2, 1])
    np.testing.assert_allclose(speaker_means(emb, spk), [[2, 0], [5, 5], [0, 3]])
    np.testing.assert_allclose(speaker_means(emb, spk, normalise=True)[2], [0, 1])
    with pytest.raises(ValueError, match="speaker index 1 has no utterances"):
        speaker_means(emb[:4], np.array([0, 0, 2, 2]))
