"""The statistics core: corrected repeated k-fold t-test, its power, exact and bootstrap intervals,
calibration and the per-fold failure flag (pipeline/evaluation/stats.py)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from pipeline.evaluation import metrics as M
from pipeline.evaluation import stats as S


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


def test_the_exact_mdd_has_80_percent_power_where_the_normal_formula_has_less():
    # differences 0.1, 0.2, 0.3: s = 0.1 exactly; 3 folds, 1 repeat (df 2), n_test/n_train = 1/2:
    # se = 0.1 * sqrt(1/3 + 1/2) = 0.0912871; the normal-approximation MDD (t_{0.975,2} + t_{0.80,2}) se
    # = (4.3027 + 1.0607) * 0.0912871 = 0.48961 has less than 80% power under the noncentral t
    r = S.repeated_kfold_ttest([0.1, 0.2, 0.3], n_train=40, n_test=20, folds=3)
    approx = (sps.t.ppf(0.975, 2) + sps.t.ppf(0.8, 2)) * 0.1 * math.sqrt(1 / 3 + 1 / 2)
    assert approx == pytest.approx(0.48961, abs=2e-5) and S.power(approx, 0.1, 3, 40, 20) < 0.79
    assert S.power(r["mdd"], 0.1, 3, 40, 20) == pytest.approx(0.800, abs=0.001)
    assert r["mdd"] > approx
    d = S.design_exact(r, target=0.059, folds=3, n_train=40, n_test=20)
    assert d["mdd"] == pytest.approx(r["mdd"], rel=1e-9) and d["power_at_target"] < 0.1
    # 5.9 points is below the floor the n_test/n_train term leaves however many repeats are run
    floor = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * 0.1 * math.sqrt(0.5)
    assert d["mdd_limit"] == pytest.approx(floor, rel=1e-9) and floor > 0.059 and d["repeats_needed"] is None
    # the sd's 95% interval on 2 df (chi-square) and the MDDs it implies, which scale with the sd
    low, high = 0.1 * math.sqrt(2 / sps.chi2.ppf(0.975, 2)), 0.1 * math.sqrt(2 / sps.chi2.ppf(0.025, 2))
    assert (d["sd_ci_low"], d["sd_ci_high"]) == pytest.approx((low, high), rel=1e-9)
    assert d["mdd_range"] == pytest.approx([r["mdd"] * low / 0.1, r["mdd"] * high / 0.1], rel=1e-6)
    assert "patients_needed" not in d     # no extrapolation to patients: training noise does not shrink with them


@pytest.mark.parametrize("sd, j, n_train, n_test", [(0.0464, 3, 190, 95), (0.02, 15, 400, 100), (0.1, 2, 10, 10)])
def test_the_exact_mdd_gives_80_percent_power_under_the_codes_power_function(sd, j, n_train, n_test):
    assert S.power(S.exact_mdd(sd, j, n_train, n_test), sd, j, n_train, n_test) == pytest.approx(0.800, abs=0.001)


def test_repeats_needed_reached_when_the_variance_allows():
    # s = 0.02, n_test/n_train = 0.25: with k = 5 the MDD shrinks with repeats below 0.059
    need = S.repeats_needed(0.059, 0.02, folds=5, n_train=80, n_test=20)
    assert need is not None and need >= 1
    assert S.minimum_detectable_difference(0.02, 5 * need, 80, 20) <= 0.059
    if need > 1:
        assert S.minimum_detectable_difference(0.02, 5 * (need - 1), 80, 20) > 0.059


def test_a_stratified_cluster_bootstrap_keeps_each_resamples_class_counts():
    # 7 patients of class 0 (3 images each) and 4 of class 1 (2 images each): every resample draws 7 and 4
    groups = [f"a{i}" for i in range(7) for _ in range(3)] + [f"b{i}" for i in range(4) for _ in range(2)]
    strata = [0] * 21 + [1] * 8
    index, counts = S.stratified_patient_counts(groups, strata, 500, seed=3)
    patients = np.unique(np.asarray(groups))
    is_b = np.char.startswith(patients.astype(str), "b")
    assert (counts[:, ~is_b].sum(axis=1) == 7).all() and (counts[:, is_b].sum(axis=1) == 4).all()
    assert counts.std(axis=0).min() > 0        # and it does resample
    with pytest.raises(ValueError, match="has images in strata"):
        S.stratified_patient_counts(["p", "p"], [0, 1], 10, 0)
    # an unstratified draw of the same 11 patients does not keep them (the bug the audit found)
    rng = np.random.default_rng(3)
    drawn = rng.integers(0, 11, size=(500, 11))
    assert len({int((np.isin(drawn, np.flatnonzero(is_b))).sum(axis=1)[b]) for b in range(500)}) > 1


def test_ppv_at_a_stated_prevalence_is_bayes_formula_from_sensitivity_and_specificity():
    rng = np.random.default_rng(0)
    y = np.repeat(rng.integers(0, 2, 40), 3)
    p1 = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.25, len(y)), 0, 1)
    out = S.patient_bootstrap(y, np.c_[1 - p1, p1], np.repeat(np.arange(40), 3), 300, 0, prevalence=0.1)
    pos = out["classes"][1]
    se, sp = pos["sensitivity"]["estimate"], pos["specificity"]["estimate"]
    assert pos["ppv_at_prevalence"]["estimate"] == pytest.approx(se * 0.1 / (se * 0.1 + (1 - sp) * 0.9), rel=1e-12)
    assert pos["npv_at_prevalence"]["estimate"] == pytest.approx(sp * 0.9 / (sp * 0.9 + (1 - se) * 0.1), rel=1e-12)
    # at the cohort's own prevalence Bayes' formula gives the plain PPV back
    cohort = pos["prevalence_cohort"]
    ppv, _ = S.ppv_npv_at(se, sp, cohort)
    assert float(ppv) == pytest.approx(pos["ppv"]["estimate"], rel=1e-9)
    assert out["classes"][0]["ppv_at_prevalence"]["prevalence"] == pytest.approx(0.9)


def test_binary_ece_is_of_the_positive_class_probability_over_all_ten_bins():
    # one image per bin (P(positive) = 0.05, 0.15, ..., 0.95), outcome 1 in the upper five:
    # |y - p| per image: 0.05 0.15 0.25 0.35 0.45 | 0.45 0.35 0.25 0.15 0.05, mean 0.25
    p1 = np.arange(10) / 10 + 0.05
    y = (p1 > 0.5).astype(int)
    cal = M.calibration(y, np.c_[1 - p1, p1])
    assert cal["ece"] == pytest.approx(0.25, abs=1e-12)
    assert len(cal["reliability"]["mean_confidence"]) == 10      # every bin used, as the figure draws them
    assert S.weighted_ece(y, np.c_[1 - p1, p1], np.ones((1, 10)))[0] == pytest.approx(0.25, abs=1e-12)
    # the top-class confidence (max(p, 1 - p)) would fill only bins 5-9
    assert len(set(np.searchsorted(np.linspace(0, 1, 11)[1:-1], np.maximum(p1, 1 - p1)))) == 5


def test_weighted_auc_is_scikit_learns_with_sample_weights_ties_included():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y, s = rng.integers(0, 2, 200), np.round(rng.random(200), 1)      # rounded: many ties
    w = rng.integers(0, 3, (4, 200)).astype(float)
    assert S.weighted_auc(y == 1, s, w) == pytest.approx([roc_auc_score(y, s, sample_weight=x) for x in w], rel=1e-12)


def test_exact_mcnemar_matches_scipys_binomial_test_on_a_hand_made_table():
    # 10 patients: both right 4, both wrong 1, only the reference right 1, only the comparator right 4
    ref = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0, 0], dtype=bool)
    other = np.array([1, 1, 1, 1, 0, 0, 1, 1, 1, 1], dtype=bool)
    out = S.exact_mcnemar(ref, other)
    assert (out["reference_only_right"], out["comparator_only_right"], out["discordant"]) == (1, 4, 5)
    assert out["p_value"] == pytest.approx(sps.binomtest(1, 5, 0.5).pvalue, rel=1e-12) == pytest.approx(0.375)
    assert S.exact_mcnemar([True, False], [True, False])["p_value"] is None       # no discordant patient


def test_the_validation_chosen_operating_point_never_reads_a_test_row():
    from pipeline import evaluate

    rng = np.random.default_rng(2)

    def part(n, offset):
        y = np.repeat(rng.integers(0, 2, n // 2), 2)      # two images per patient, one diagnosis
        p = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, n), 0, 1)
        return pd.DataFrame({"image_id": np.arange(offset, offset + n), "patient_id": [f"p{offset + i // 2}" for i in range(n)],
                             "label": y, "prob_normal": 1 - p, "prob_myositis": p})

    tests, vals = [part(40, 0), part(40, 100)], [part(30, 200), part(30, 300)]
    first = evaluate.operating_point(tests, vals, ["normal", "myositis"], 0.9, 200, 0)
    for v, t in zip(vals, first["thresholds"]):    # the threshold reaches 90% sensitivity on its validation part
        assert (v.loc[v["label"] == 1, "prob_myositis"] >= t).mean() >= 0.9
    scrambled = [t.assign(prob_myositis=rng.random(len(t))) for t in tests]
    scrambled = [t.assign(prob_normal=1 - t["prob_myositis"]) for t in scrambled]
    again = evaluate.operating_point(scrambled, vals, ["normal", "myositis"], 0.9, 200, 0)
    assert again["thresholds"] == first["thresholds"]          # test probabilities changed, thresholds did not
    moved = [v.assign(prob_myositis=v["prob_myositis"] * 0.5) for v in vals]
    assert evaluate.operating_point(tests, moved, ["normal", "myositis"], 0.9, 200, 0)["thresholds"] != first["thresholds"]


def test_the_holm_consistent_interval_widens_at_its_step_and_excludes_zero_as_the_adjusted_p_says():
    t = S.repeated_kfold_ttest([0.05, 0.07, 0.06, 0.08, 0.04], n_train=80, n_test=20, folds=5)
    step = S.holm_interval(t, rank=0, family_size=3)
    assert step["holm_level"] == pytest.approx(0.05 / 3)
    assert step["ci_holm_low"] < t["ci_low"] and step["ci_holm_high"] > t["ci_high"]
    assert (step["ci_holm_low"] > 0) == (min(1, 3 * t["p_value"]) < 0.05)
    last = S.holm_interval(t, rank=2, family_size=3)       # the last step is at the plain level
    assert (last["ci_holm_low"], last["ci_holm_high"]) == pytest.approx((t["ci_low"], t["ci_high"]), rel=1e-12)


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
    # P(positive) 0.2, 0.6 (outcome 0) and 0.7, 0.9 (outcome 1), one per bin:
    # ECE = (0.2 + 0.6 + 0.3 + 0.1) / 4 = 0.3
    assert c["ece"] == pytest.approx(0.3)
    assert c["reliability"]["accuracy"] == [0.0, 0.0, 1.0, 1.0]
    assert c["reliability"]["mean_confidence"] == pytest.approx([0.2, 0.6, 0.7, 0.9])
    # four classes: the classwise ECE, the mean of each class's own ECE
    y4 = np.array([0, 1, 2, 3])
    p4 = np.full((4, 4), 0.1) + 0.6 * np.eye(4)
    assert S.calibration(y4, p4)["ece"] == pytest.approx(np.mean([(0.3 + 3 * 0.1) / 4] * 4))


def test_class_rates_with_patient_intervals():
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    pred = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    patients = np.array(["a", "a", "b", "c", "c", "d", "e", "f"])
    prob = np.c_[1 - pred, pred].astype(float)
    r = S.patient_bootstrap(y, prob, patients, n_resamples=500, seed=0)["classes"]
    m = r[1]
    assert m["sensitivity"]["estimate"] == pytest.approx(3 / 4) and m["specificity"]["estimate"] == pytest.approx(3 / 4)
    assert m["ppv"]["estimate"] == pytest.approx(3 / 4) and m["npv"]["estimate"] == pytest.approx(3 / 4)
    for q in ("sensitivity", "specificity", "ppv", "npv"):
        assert m[q]["ci_low"] <= m[q]["estimate"] <= m[q]["ci_high"]
    assert r[0]["sensitivity"]["estimate"] == pytest.approx(m["specificity"]["estimate"])


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


def test_the_projected_mdd_brackets_the_other_design_under_each_stated_assumption():
    primary = {"n_patients": 40, "test": {"sd": 0.05, "n_differences": 3},
               "design": {"target": 0.059, "sd_ci_high": 0.3, "sd_df": 2}}
    rows = S.projected_mdd(primary, folds=5, repeats=3, patients=80, val_share=0.2)
    assert [r["sd"] for r in rows] == pytest.approx([0.05, 0.05 * math.sqrt(0.5), 0.3, 0.3 * math.sqrt(0.5)])
    n_test, n_train = 0.2, 0.8 * 0.8
    for r in rows:      # each an exact MDD of 15 differences at the paper's test/train ratio
        assert r["mdd"] == pytest.approx(S.exact_mdd(r["sd"], 15, n_train, n_test), rel=1e-12)
        assert S.power(r["mdd"], r["sd"], 15, n_train, n_test) == pytest.approx(0.8, abs=1e-3)
    assert rows[0]["mdd"] < rows[2]["mdd"] and rows[1]["mdd"] < rows[0]["mdd"]
