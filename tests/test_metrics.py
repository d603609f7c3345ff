import numpy as np
import pytest

from purl.metrics import (
    compute_eer,
    compute_eer_interpolated,
    compute_min_dcf,
    eer_and_min_dcf,
    metrics_from_points,
    operating_points,
    plot_det,
)


def _rates(scores, labels, threshold):
    """P_miss and P_fa of one threshold, straight from the definition."""
    accept = scores >= threshold
    tar = labels.astype(bool)
    return np.mean(~accept[tar]), np.mean(accept[~tar])


def _brute_force(scores, labels, p_target):
    """EER and minDCF by sweeping every distinct score plus -inf and +inf."""
    thresholds = np.concatenate(([-np.inf], np.unique(scores), [np.inf]))
    rates = np.array([_rates(scores, labels, t) for t in thresholds])
    p_miss, p_fa = rates[:, 0], rates[:, 1]
    i = np.argmin(np.abs(p_miss - p_fa))
    eer = 0.5 * (p_miss[i] + p_fa[i])
    dcf = p_target * p_miss + (1 - p_target) * p_fa
    min_dcf = dcf.min() / min(p_target, 1 - p_target)
    return eer, min_dcf


def _random_trials(rng, n, decimals=None):
    labels = rng.random(n) < 0.3
    scores = rng.normal(size=n) + 1.5 * labels
    if decimals is not None:
        scores = np.round(scores, decimals)  # heavy ties, mixed labels in a tie
    return scores, labels


@pytest.mark.parametrize("decimals", [None, 1, 0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_and_min_dcf_match_brute_force_threshold_sweep(seed, decimals):
    rng = np.random.default_rng(seed)
    scores, labels = _random_trials(rng, 400, decimals)
    for p_target in (0.01, 0.05, 0.5):
        eer, min_dcf = _brute_force(scores, labels, p_target)
        got_eer, eer_thr = compute_eer(scores, labels)
        got_dcf, dcf_thr = compute_min_dcf(scores, labels, p_target)
        assert got_eer == pytest.approx(eer, abs=1e-12)
        assert got_dcf == pytest.approx(min_dcf, abs=1e-12)
        # The returned thresholds really achieve the reported metrics.
        pm, pfa = _rates(scores, labels, eer_thr)
        assert 0.5 * (pm + pfa) == pytest.approx(got_eer, abs=1e-12)
        pm, pfa = _rates(scores, labels, dcf_thr)
        cost = (p_target * pm + (1 - p_target) * pfa) / min(p_target, 1 - p_target)
        assert cost == pytest.approx(got_dcf, abs=1e-12)


def test_tied_scores_collapse_to_one_operating_point():
    scores = np.array([0.5, 0.5, 0.5, 0.5, 0.1, 0.9])
    labels = np.array([1, 0, 1, 0, 0, 1])
    op = operating_points(scores, labels)
    np.testing.assert_array_equal(op.thresholds, [0.1, 0.5, 0.9, np.inf])
    np.testing.assert_allclose(op.p_miss, [0, 0, 2 / 3, 1])
    np.testing.assert_allclose(op.p_fa, [1, 2 / 3, 0, 0])
    # Result must not depend on how tied trials are ordered in the input.
    perm = np.array([1, 3, 0, 2, 4, 5])
    assert compute_eer(scores[perm], labels[perm]) == compute_eer(scores, labels)


def test_operating_points_run_from_accept_all_to_reject_all():
    rng = np.random.default_rng(3)
    op = operating_points(*_random_trials(rng, 1000, decimals=1))
    assert (op.p_miss[0], op.p_fa[0]) == (0.0, 1.0)
    assert (op.p_miss[-1], op.p_fa[-1]) == (1.0, 0.0)
    assert np.all(np.diff(op.p_miss) >= 0) and np.all(np.diff(op.p_fa) <= 0)
    assert np.all(np.diff(op.thresholds) > 0)


def test_perfect_separation_gives_eer_zero():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    labels = np.array([0, 0, 0, 1, 1])
    eer, threshold = compute_eer(scores, labels)
    assert eer == 0.0
    assert 0.3 < threshold <= 0.7
    assert compute_min_dcf(scores, labels, 0.01)[0] == 0.0


def test_reversed_scores_give_eer_one():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    labels = np.array([1, 1, 1, 0, 0])
    assert compute_eer(scores, labels)[0] == 1.0


def test_min_dcf_hand_computed_case():
    # Thresholds: 1 -> (pm 0, pfa 1), 2 -> (0, 1/2), 3 -> (1/2, 1/2),
    # 4 -> (1/2, 0), inf -> (1, 0).  With p_target = 0.25:
    # DCF = 0.25 pm + 0.75 pfa = 0.75, 0.375, 0.5, 0.125, 0.25;
    # normalised by min(0.25, 0.75) = 0.25: min 0.5 at threshold 4.
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    labels = np.array([0, 1, 0, 1])
    min_dcf, threshold = compute_min_dcf(scores, labels, p_target=0.25)
    assert min_dcf == pytest.approx(0.5)
    assert threshold == 4.0
    # Costs: c_miss = 2 -> DCF = 0.5 pm + 0.75 pfa = 0.75, 0.375, 0.625, 0.25,
    # 0.5; normalised by min(0.5, 0.75): min 0.5 again, at threshold 4.
    assert compute_min_dcf(scores, labels, 0.25, c_miss=2.0)[0] == pytest.approx(0.5)


def test_evaluate_returns_eer_and_both_min_dcfs():
    rng = np.random.default_rng(4)
    scores, labels = _random_trials(rng, 500)
    metrics = eer_and_min_dcf(scores, labels)
    assert set(metrics) == {"eer", "min_dcf_0.01", "min_dcf_0.05"}
    assert metrics["eer"] == compute_eer(scores, labels)[0]
    assert metrics["min_dcf_0.05"] == compute_min_dcf(scores, labels, 0.05)[0]
    assert metrics_from_points(operating_points(scores, labels)) == metrics


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([], [], "no trials"),
        ([0.1, 0.2], [0, 0], "no target"),
        ([0.1, 0.2], [1, 1], "no non-target"),
        ([0.1, 0.2], [0, 1, 1], "one label per trial"),
        ([0.1, np.nan], [0, 1], "finite"),
        ([0.1, 0.2], [0, 2], "0/1"),
    ],
)
def test_bad_trials_raise_value_error(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        compute_eer(scores, labels)


def test_plot_det_writes_png(tmp_path):
    rng = np.random.default_rng(5)
    curves = {}
    for name, shift in (("weak", 1.0), ("strong", 3.0)):
        labels = rng.random(2000) < 0.5
        op = operating_points(rng.normal(size=2000) + shift * labels, labels)
        curves[name] = (op.p_miss, op.p_fa)
    path = tmp_path / "det.png"
    plot_det(curves, path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["det.png"]  # no temp file left


def test_roc_auc_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    from purl.metrics import roc_auc

    rng = np.random.default_rng(3)
    positive = rng.random(2000) < 0.3
    scores = np.round(rng.normal(size=2000) + positive, 1)  # many ties
    assert roc_auc(positive, scores) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    assert np.isnan(roc_auc(np.zeros(5, bool), np.arange(5.0)))


def original_calculate_eer(ground_truth, prediction):
    """src/metrics.py:84-91 of the original work (e8886b6), transcribed."""
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(ground_truth, prediction, pos_label=1)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n, decimals", [(12, None), (200, 1), (3000, 2), (3000, None)])
def test_interpolated_eer_is_the_originals(seed, n, decimals):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < rng.uniform(0.1, 0.6)
    labels[:2] = [True, False]
    scores = rng.normal(size=n) + rng.uniform(0.5, 3) * labels
    if decimals is not None:  # ties, within and across the classes
        scores = np.round(scores, decimals)
    expected = original_calculate_eer(labels.astype(int), scores)
    assert compute_eer_interpolated(scores, labels) == pytest.approx(expected, abs=1e-9)
    assert abs(compute_eer_interpolated(scores, labels) - compute_eer(scores, labels)[0]) <= 1 / labels.sum()


@pytest.mark.parametrize("scores, labels, eer", [
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 0.0),  # separated
    ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 1.0),  # reversed
    ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),  # all tied
    ([0.9, 0.5, 0.1], [0, 1, 0], 0.5),  # on the vertical piece at fpr 0.5 (the step EER: 0.25)
    ([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 0, 1, 1], 2 / 3),  # between (fpr, tpr) (.5, 1/3) and (1, 1/3)
])
def test_interpolated_eer_of_hand_checked_cases(scores, labels, eer):
    assert compute_eer_interpolated(scores, labels) == pytest.approx(eer, abs=1e-12)
    assert compute_eer_interpolated(scores, labels) == pytest.approx(original_calculate_eer(labels, scores), abs=1e-9)
