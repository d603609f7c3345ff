"""Calibration: Cllr, min Cllr and the actual DCF against hand-computed cases,
the prior-weighted logistic fit against known parameters, QMF features and
the calibration trial list."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from purl.calibration import (
    CalibrationError,
    LinearCalibration,
    duration_measure,
    empirical_llr,
    fit_linear,
    held_out_trials,
    prior_weighted_cross_entropy,
    qmf_features,
)
from purl.metrics import (
    actual_dcf,
    bayes_threshold,
    cllr,
    compute_eer,
    compute_min_dcf,
    min_cllr,
    pav_llr,
)


def gaussian_scores(n, p_tar=0.3, mu_tar=2.0, mu_non=-1.0, sd=1.5, seed=0):
    """Scores of two Gaussians of one spread: their true LLR is linear in the score."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < p_tar
    scores = np.where(labels, rng.normal(mu_tar, sd, n), rng.normal(mu_non, sd, n))
    scale = (mu_tar - mu_non) / sd ** 2
    offset = (mu_non ** 2 - mu_tar ** 2) / (2 * sd ** 2)
    return scores, labels, scale, offset


def calibrated_llrs(n, mu, seed=0):
    """LLRs that are calibrated by construction: N(mu, 2 mu) for targets and
    N(-mu, 2 mu) for non-targets (the LLR of an LLR is itself)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2 == 0
    llr = np.where(labels, mu, -mu) + np.sqrt(2 * mu) * rng.standard_normal(n)
    return llr, labels


def cllr_of_calibrated_gaussian(mu):
    """Cllr of N(+-mu, 2 mu) LLRs by integration: both classes cost the same."""
    def cost(x):
        return np.logaddexp(0.0, -x) * stats.norm.pdf(x, mu, np.sqrt(2 * mu))
    return integrate.quad(cost, -np.inf, np.inf)[0] / np.log(2)


# --- Cllr, min Cllr and the actual DCF, by hand

def test_cllr_of_llrs_that_say_nothing_is_one_and_of_a_hand_case_is_log2_4_over_3():
    labels = np.array([1, 0, 1, 0, 0])
    assert cllr(np.zeros(5), labels) == pytest.approx(1.0, abs=1e-15)
    # a target at log 3 and a non-target at -log 3: each costs log2(1 + 1/3)
    assert cllr(np.log([3.0, 1 / 3]), [1, 0]) == pytest.approx(np.log2(4 / 3), abs=1e-15)
    # certain and right costs nothing; certain and wrong costs everything
    assert cllr(np.array([np.inf, -np.inf]), [1, 0]) == 0.0
    assert cllr(np.array([-np.inf, -np.inf]), [1, 0]) == np.inf


def test_cllr_of_calibrated_llrs_equals_its_integral_and_its_min_cllr():
    mu = 3.0
    llr, labels = calibrated_llrs(400_000, mu)
    expected = cllr_of_calibrated_gaussian(mu)
    assert cllr(llr, labels) == pytest.approx(expected, abs=3e-3)
    # calibrated: the best monotone map (PAV) gains almost nothing
    assert min_cllr(llr, labels) == pytest.approx(cllr(llr, labels), abs=3e-3)
    assert min_cllr(llr, labels) <= cllr(llr, labels)


@pytest.mark.parametrize("factor", [0.25, 0.5, 2.0, 4.0])
def test_scaled_llrs_cost_more_and_keep_their_min_cllr(factor):
    llr, labels = calibrated_llrs(100_000, 2.0, seed=1)
    assert min_cllr(factor * llr, labels) == min_cllr(llr, labels)  # the order alone: exactly equal
    assert cllr(factor * llr, labels) > cllr(llr, labels) + 0.005
    assert cllr(factor * llr, labels) >= min_cllr(factor * llr, labels)


def test_pav_llrs_are_min_cllr_and_decide_at_min_dcf_for_every_prior():
    rng = np.random.default_rng(2)
    labels = rng.random(3000) < 0.2
    scores = np.round(rng.normal(size=3000) + 1.2 * labels, 1)  # ties, mixed labels in a tie
    llr = pav_llr(scores, labels)
    assert cllr(llr, labels) == pytest.approx(min_cllr(scores, labels), abs=1e-14)
    ordered = llr[np.argsort(scores, kind="stable")]
    assert np.all(ordered[1:] >= ordered[:-1])  # monotone in the score
    assert len(np.unique(llr[scores == scores[0]])) == 1  # ties share one LLR
    for p in (0.001, 0.01, 0.05, 0.2, 0.5, 0.9):
        assert actual_dcf(llr, labels, p) == pytest.approx(compute_min_dcf(scores, labels, p)[0], abs=1e-12), p


def test_pav_of_a_hand_case():
    # sorted: n(0) t(1) n(2) t(3): the middle pair violates and pools to 1/2
    llr = pav_llr([0.0, 1.0, 2.0, 3.0], [0, 1, 0, 1])
    np.testing.assert_allclose(llr, [-np.inf, 0.0, 0.0, np.inf])
    assert min_cllr([0.0, 1.0, 2.0, 3.0], [0, 1, 0, 1]) == pytest.approx(0.5)  # each pooled trial costs 1 bit


def test_actual_dcf_hand_cases():
    assert bayes_threshold(0.5) == 0.0
    assert bayes_threshold(0.01) == pytest.approx(np.log(99))
    # at 0.5: the target at -1 is missed, the non-target at 1 accepted: (0.5 * 0.5 + 0.5 * 0.5) / 0.5
    llr, labels = np.array([2.0, -1.0, -3.0, 1.0]), np.array([1, 1, 0, 0])
    assert actual_dcf(llr, labels, 0.5) == pytest.approx(1.0)
    assert compute_min_dcf(llr, labels, 0.5)[0] == pytest.approx(0.5)
    # separated, and the Bayes threshold between the classes: both are 0
    llr = np.array([3.0, 4.0, -2.0, 1.0])
    assert actual_dcf(llr, labels, 0.05) == compute_min_dcf(llr, labels, 0.05)[0] == 0.0
    # separated, but the threshold (2.94 at 0.05) above a target at 2: a miss of 1/2
    llr = np.array([2.0, 4.0, -2.0, 1.0])
    assert actual_dcf(llr, labels, 0.05) == pytest.approx(0.5 * 0.05 / 0.05)


@pytest.mark.parametrize("p", [0.01, 0.05, 0.5])
def test_actual_dcf_is_never_below_min_dcf(p):
    scores, labels, _, _ = gaussian_scores(5000, seed=3)
    for llr in (scores, 3 * scores - 2, 0.3 * scores + 1):
        assert actual_dcf(llr, labels, p) >= compute_min_dcf(llr, labels, p)[0] - 1e-15


# --- the logistic fit

@pytest.mark.parametrize("p_target", [0.5, 0.05, 0.01])
def test_logistic_fit_recovers_the_llr_of_gaussian_scores(p_target):
    scores, labels, scale, offset = gaussian_scores(400_000, seed=4)
    cal = fit_linear(scores, labels, p_target)
    assert cal.weights[0] == pytest.approx(scale, rel=0.01)
    assert cal.bias == pytest.approx(offset, abs=0.02)
    assert cal.p_target == p_target
    # and the calibrated scores are calibrated: Cllr close to the PAV bound
    llr = cal(scores)
    assert cllr(llr, labels) - min_cllr(scores, labels) < 0.003


def test_logistic_fit_minimises_the_prior_weighted_cross_entropy():
    scores, labels, _, _ = gaussian_scores(5000, seed=5)
    cal = fit_linear(scores, labels, 0.05)
    best = prior_weighted_cross_entropy(cal(scores), labels, 0.05)
    for d_scale, d_offset in ((0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)):
        moved = (cal.weights[0] + d_scale) * scores + cal.bias + d_offset
        assert prior_weighted_cross_entropy(moved, labels, 0.05) > best
    # at prior 0.5 the objective is Cllr in nats
    assert prior_weighted_cross_entropy(cal(scores), labels, 0.5) == pytest.approx(cllr(cal(scores), labels) * np.log(2))


def test_fit_does_not_depend_on_the_proportion_of_targets():
    scores, labels, _, _ = gaussian_scores(200_000, p_tar=0.5, seed=6)
    few_targets = labels & (np.arange(labels.size) % 5 != 0) | ~labels  # drop a fifth of the targets
    full, thinned = fit_linear(scores, labels, 0.05), fit_linear(scores[few_targets], labels[few_targets], 0.05)
    assert thinned.weights[0] == pytest.approx(full.weights[0], rel=0.02)
    assert thinned.bias == pytest.approx(full.bias, abs=0.03)


def test_separated_calibration_trials_give_a_finite_fit():
    scores = np.r_[np.linspace(0.5, 0.9, 50), np.linspace(-0.2, 0.3, 500)]
    labels = np.r_[np.ones(50, bool), np.zeros(500, bool)]
    cal = fit_linear(scores, labels, 0.05)
    assert np.isfinite(cal.weights).all() and cal.weights[0] > 0
    assert actual_dcf(cal(scores), labels, 0.05) == 0.0


def test_fit_refuses_one_class_and_a_constant_feature():
    with pytest.raises(CalibrationError, match="target and non-target"):
        fit_linear([0.1, 0.2], [1, 1])
    x = np.column_stack([np.linspace(0, 1, 10), np.ones(10)])
    with pytest.raises(CalibrationError, match="'lower duration' is constant"):
        fit_linear(x, np.arange(10) % 2 == 0, names=("score", "lower duration"))


def test_calibration_round_trips_through_a_dict():
    cal = LinearCalibration(np.array([2.5, -0.1]), -1.25, 0.05, ("score", "lower duration"))
    again = LinearCalibration.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again(np.ones((3, 2))), cal(np.ones((3, 2))))
    assert again.names == cal.names and again.p_target == 0.05


# --- QMF

def test_qmf_features_are_symmetric_in_the_two_sides():
    scores = np.array([0.3, 0.7])
    enroll = np.array([[1.0, 5.0], [2.0, 1.0]])
    test = np.array([[3.0, 4.0], [0.5, 6.0]])
    x, names = qmf_features(scores, enroll, test, ("duration", "imposter mean"))
    assert names == ("score", "lower duration", "higher duration", "lower imposter mean", "higher imposter mean")
    np.testing.assert_array_equal(x, [[0.3, 1.0, 3.0, 4.0, 5.0], [0.7, 0.5, 2.0, 1.0, 6.0]])
    np.testing.assert_array_equal(qmf_features(scores, test, enroll, ("duration", "imposter mean"))[0], x)


def test_duration_measure_is_log_seconds_capped_at_20():
    np.testing.assert_allclose(duration_measure([1.0, 20.0, 60.0]), np.log([1.0, 20.0, 20.0]))


def test_qmf_learns_a_duration_dependent_offset():
    """Short trials score lower for both classes: the score alone miscalibrates
    them, the duration measure moves their threshold."""
    rng = np.random.default_rng(7)
    n = 60_000
    labels = rng.random(n) < 0.4
    dur = rng.choice([2.0, 12.0], size=(n, 2))
    short = np.log(dur.min(axis=1)) < 1
    scores = np.where(labels, 0.6, 0.1) - 0.2 * short + 0.12 * rng.standard_normal(n)
    measures = duration_measure(dur)
    x, names = qmf_features(scores, measures[:, :1], measures[:, 1:], ("duration",))
    plain, qmf = fit_linear(scores, labels, 0.05), fit_linear(x, labels, 0.05, names=names)
    assert cllr(qmf(x), labels) < cllr(plain(scores), labels) - 0.05
    assert compute_eer(qmf(x), labels)[0] < compute_eer(scores, labels)[0]


# --- calibration trials and the reliability diagram

def test_held_out_trials_draw_speakers_with_a_seed():
    utt2spk = {f"spk{s:02d}-u{u}": f"spk{s:02d}" for s in range(30) for u in range(4)}
    utt2spk["spk99-u0"] = "spk99"  # one utterance: never drawn
    trials, speakers = held_out_trials(utt2spk, 10, seed=3)
    again, same = held_out_trials(utt2spk, 10, seed=3)
    assert trials == again and speakers == same and len(speakers) == 10 and "spk99" not in speakers
    assert held_out_trials(utt2spk, 10, seed=4)[1] != speakers
    used = {utt2spk[u] for a, b, _ in trials for u in (a, b)}
    assert used <= set(speakers)
    targets = [t for t in trials if t[2]]
    assert len(targets) == 10 * 6 and all(utt2spk[a] == utt2spk[b] for a, b, _ in targets)
    assert sum(not t[2] for t in trials) == len(targets)
    with pytest.raises(CalibrationError, match="at least 2"):
        held_out_trials({"a-1": "a", "a-2": "a"}, 5)


def test_empirical_llr_of_calibrated_llrs_lies_on_the_diagonal():
    llr, labels = calibrated_llrs(400_000, 2.0, seed=8)
    x, y, counts = empirical_llr(llr, labels)
    well_filled = (counts > 2000) & (np.abs(x) < 4.5)  # beyond, a bin holds few of one class
    assert well_filled.sum() >= 8
    np.testing.assert_allclose(y[well_filled], x[well_filled], atol=0.15)
    x2, y2, _ = empirical_llr(3 * llr, labels)
    assert np.all(np.abs(y2) < np.abs(x2) + 0.1)  # overconfident: the truth is nearer 0
