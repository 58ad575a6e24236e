"""The statistics core: corrected repeated k-fold t-test, its power, exact and bootstrap intervals,
calibration and the per-fold failure flag (pipeline/stats.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from pipeline import stats as S


def test_repeated_kfold_ttest_matches_a_worked_example():
    # k = 3 folds x r = 2 repeats, n_train = 40, n_test = 20. By hand:
    # mean = 0.32 / 6 = 0.053333; squared deviations sum to 0.0071333, s^2 = 0.0071333 / 5 = 0.00142667;
    # factor = 1/6 + 20/40 = 0.666667; se = sqrt(0.666667 * 0.00142667) = 0.030840; t = 1.72935, df = 5;
    # two-sided p = 0.1444 (t table, 5 df); half-width = t_{0.975,5} 2.5706 * 0.030840 = 0.079278.
    d = [0.05, 0.10, 0.00, 0.08, 0.02, 0.07]
    r = S.repeated_kfold_ttest(d, n_train=40, n_test=20, folds=3, repeats=2)
    assert r["df"] == 5 and r["n_differences"] == 6 and r["n_repeats"] == 2
    assert r["mean_difference"] == pytest.approx(0.053333, abs=1e-6)
    assert r["sd"] ** 2 == pytest.approx(0.00142667, abs=1e-8)
    assert r["se"] == pytest.approx(0.030840, abs=1e-6)
    assert r["t"] == pytest.approx(1.72935, abs=1e-4)
    assert r["p_value"] == pytest.approx(0.1444, abs=5e-4)
    assert r["ci_low"] == pytest.approx(0.053333 - 0.079278, abs=1e-5)
    assert r["ci_high"] == pytest.approx(0.053333 + 0.079278, abs=1e-5)


def test_repeated_kfold_ttest_refuses_a_count_that_is_not_k_times_r():
    with pytest.raises(ValueError, match="5 differences for 3 folds x 2 repeats"):
        S.repeated_kfold_ttest([0.1, 0.2, 0.3, 0.1, 0.0], 40, 20, folds=3, repeats=2)


def _nadeau_bengio(d, n_train, n_test):
    """The test as the project computed it before repeats (metrics.corrected_resampled_ttest)."""
    d = np.asarray(d, dtype=float)
    k = len(d)
    se = math.sqrt((1 / k + n_test / n_train) * d.var(ddof=1))
    t = d.mean() / se
    half = sps.t.ppf(0.975, k - 1) * se
    return t, 2 * sps.t.sf(abs(t), k - 1), d.mean() - half, d.mean() + half


@pytest.mark.parametrize("d", [[0.1, -0.05, 0.2], [0.02, 0.03, 0.01, 0.06, -0.01], [-0.3, 0.1]])
def test_one_repeat_equals_the_old_test(d):
    r = S.repeated_kfold_ttest(d, n_train=50, n_test=25, folds=len(d), repeats=1)
    t, p, lo, hi = _nadeau_bengio(d, 50, 25)
    assert r["df"] == len(d) - 1
    assert (r["t"], r["p_value"], r["ci_low"], r["ci_high"]) == pytest.approx((t, p, lo, hi), rel=1e-12)


def test_minimum_detectable_difference_of_a_known_variance():
    # differences 0.1, 0.2, 0.3: s = 0.1 exactly; 3 folds, 1 repeat (df 2), n_test/n_train = 1/2:
    # se = 0.1 * sqrt(1/3 + 1/2) = 0.0912871; t_{0.975,2} = 4.3027, t_{0.80,2} = 1.0607 (STATISTICS.md)
    # MDD = (4.3027 + 1.0607) * 0.0912871 = 0.48961
    r = S.repeated_kfold_ttest([0.1, 0.2, 0.3], n_train=40, n_test=20, folds=3)
    assert r["mdd"] == pytest.approx(0.48961, abs=2e-5)
    d = S.design(r, target=0.059, folds=3, n_train=40, n_test=20, n_patients=20)
    assert d["mdd"] == pytest.approx(0.48961, abs=2e-5)
    # the power at the MDD is 80% (to the t approximation of the noncentral t), far less at 5.9 points
    assert S.power(d["mdd"], 0.1, 3, 40, 20) == pytest.approx(0.80, abs=0.05)
    assert d["power_at_target"] < 0.1
    # 5.9 points is below the floor the n_test/n_train term leaves however many repeats are run
    floor = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * 0.1 * math.sqrt(0.5)
    assert floor > 0.059 and d["repeats_needed"] is None
    # patients: (MDD / target)^2 times as many, roughly
    assert d["patients_needed"] == math.ceil(20 * (0.48961 / 0.059) ** 2) or \
        abs(d["patients_needed"] - 20 * (0.48961 / 0.059) ** 2) < 2


def test_repeats_needed_reached_when_the_variance_allows():
    # s = 0.02, n_test/n_train = 0.25: with k = 5 the MDD shrinks with repeats below 0.059
    need = S.repeats_needed(0.059, 0.02, folds=5, n_train=80, n_test=20)
    assert need is not None and need >= 1
    assert S.minimum_detectable_difference(0.02, 5 * need, 80, 20) <= 0.059
    if need > 1:
        assert S.minimum_detectable_difference(0.02, 5 * (need - 1), 80, 20) > 0.059


def test_differences_equal_in_decimal_take_the_zero_variance_path():
    d = [0.7 - 0.6, 0.8 - 0.7, 0.9 - 0.8]
    assert np.ptp(d) > 0           # not equal in binary: the old exact guard gave t = 1.6e15
    r = S.repeated_kfold_ttest(d, n_train=40, n_test=20, folds=3)
    assert r["p_value"] is None and r["t"] is None and "zero variance" in r["p_undefined"]
    assert r["mean_difference"] == pytest.approx(0.1)
    # a real spread, however small against the scale of accuracies, is not zero
    assert S.repeated_kfold_ttest([0.1, 0.1001, 0.1002], 40, 20)["p_value"] is not None
    assert S.zero_variance([0.0, 0.0, 0.0])


def test_clopper_pearson_is_the_exact_interval():
    ci = S.clopper_pearson(7, 10)
    # exact limits: Beta(0.025; 7, 4) and Beta(0.975; 8, 3)
    assert ci["ci_low"] == pytest.approx(sps.beta.ppf(0.025, 7, 4), abs=1e-9)
    assert ci["ci_high"] == pytest.approx(sps.beta.ppf(0.975, 8, 3), abs=1e-9)
    assert S.clopper_pearson(10, 10)["ci_high"] == 1.0


def test_calibration_brier_ece_and_reliability():
    y = np.array([1, 1, 0, 0])
    prob = np.array([[0.1, 0.9], [0.3, 0.7], [0.8, 0.2], [0.4, 0.6]])
    c = S.calibration(y, prob, n_bins=10)
    # Brier of the positive class: (0.01 + 0.09 + 0.04 + 0.36) / 4 = 0.125
    assert c["brier"] == pytest.approx(0.125)
    # top-class confidences 0.9, 0.7, 0.8, 0.6 (right, right, right, wrong), one per bin:
    # ECE = (0.1 + 0.3 + 0.2 + 0.6) / 4 = 0.3
    assert c["ece"] == pytest.approx(0.3)
    assert c["reliability"]["accuracy"] == [0.0, 1.0, 1.0, 1.0]
    assert c["reliability"]["mean_confidence"] == pytest.approx([0.6, 0.7, 0.8, 0.9])


def test_class_rates_with_patient_intervals():
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    pred = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    patients = np.array(["a", "a", "b", "c", "c", "d", "e", "f"])
    r = S.class_rates(y, pred, ["normal", "myositis"], patients, n_resamples=500, seed=0)
    m = r["myositis"]
    assert (m["sensitivity"]["k"], m["sensitivity"]["n"]) == (3, 4)
    assert (m["specificity"]["k"], m["specificity"]["n"]) == (3, 4)
    assert m["ppv"]["estimate"] == pytest.approx(3 / 4) and m["npv"]["estimate"] == pytest.approx(3 / 4)
    for q in ("sensitivity", "specificity", "ppv", "npv"):
        assert m[q]["ci_low"] <= m[q]["estimate"] <= m[q]["ci_high"]
    assert r["normal"]["sensitivity"]["estimate"] == pytest.approx(m["specificity"]["estimate"])


def test_failure_flag_catches_a_model_that_fails_on_one_fold_only():
    # mean balanced accuracy 0.69 (well above chance): the old mean-based flag passed it
    bal = [0.82, 0.75, 0.512]
    share = [0.55, 0.60, 0.70]
    failed = S.failed_folds(bal, share, ["1", "2", "3"], n_classes=2)
    assert [f["fold"] for f in failed] == ["3"]
    assert "balanced accuracy 0.512" in failed[0]["reasons"][0]
    failed = S.failed_folds([0.8, 0.8], [0.5, 0.96], ["1", "2"], n_classes=2)
    assert [f["fold"] for f in failed] == ["2"] and "96.0%" in failed[0]["reasons"][0]
    assert S.failed_folds([0.8, 0.8], [0.5, 0.6], ["1", "2"], n_classes=2) == []


def test_one_repeat_by_hand_nadeau_bengio():
    d = [0.02, 0.04, 0.06]
    r = S.repeated_kfold_ttest(d, n_train=80, n_test=20)
    se = math.sqrt((1 / 3 + 20 / 80) * 0.02 ** 2)     # Nadeau & Bengio: (1/k + n_test/n_train) * s^2
    t = 0.04 / se
    # Student t with 2 df has CDF 1/2 + t / (2 sqrt(2 + t^2)), so the two-sided p is 1 - t / sqrt(2 + t^2)
    p = 1 - t / math.sqrt(2 + t * t)
    assert r["mean_difference"] == pytest.approx(0.04)
    assert r["t"] == pytest.approx(t)
    assert r["df"] == 2
    assert r["p_value"] == pytest.approx(p, rel=1e-9)
    assert r["p_value"] == pytest.approx(0.120117, abs=1e-6)
    # the correction widens the interval: the uncorrected t would be larger
    assert abs(r["t"]) < 0.04 / (0.02 / math.sqrt(3))


def test_zero_variance_differences_give_no_p_value_with_the_reason():
    """Every fold giving the same difference is no evidence: p is undefined, never 0 (nor 1)."""
    for d in ([0.1, 0.1, 0.1], [0.0, 0.0, 0.0], [-0.25, -0.25]):
        r = S.repeated_kfold_ttest(d, 10, 5)
        assert r["p_value"] is None and r["t"] is None, d
        assert "zero variance" in r["p_undefined"] and r["mean_difference"] == pytest.approx(d[0])
    one = S.repeated_kfold_ttest([0.1], 10, 5)
    assert one["p_value"] is None and one["n_differences"] == 1 and "at least 2" in one["p_undefined"]
