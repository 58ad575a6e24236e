"""pipeline.evaluation.metrics on small cases computed by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.core.errors import DataError
from pipeline.evaluation import metrics as M

BINARY = ("normal", "myositis")


def binary_case():
    # truth 0 0 0 1 1, P(myositis) .1 .6 .2 .8 .4 -> predicted 0 1 0 1 0
    y = [0, 0, 0, 1, 1]
    p1 = np.array([0.1, 0.6, 0.2, 0.8, 0.4])
    return y, np.column_stack([1 - p1, p1])


def test_binary_metrics_by_hand():
    y, prob = binary_case()
    m = M.fold_metrics(y, prob, BINARY)
    # confusion matrix (rows true, columns predicted): normal 2 right 1 wrong; myositis 1 wrong 1 right
    assert m["confusion_matrix"] == [[2, 1], [1, 1]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class"]["normal"]["sensitivity"] == pytest.approx(2 / 3)
    assert m["per_class"]["myositis"]["sensitivity"] == pytest.approx(1 / 2)
    # specificity of normal: of the 2 myositis images, 1 was not called normal
    assert m["per_class"]["normal"]["specificity"] == pytest.approx(1 / 2)
    assert m["per_class"]["myositis"]["specificity"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # F1 normal: P 2/3, R 2/3; F1 myositis: P 1/2, R 1/2
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # AUC of myositis: 0.8 beats all three normals, 0.4 beats 0.1 and 0.2 but not 0.6 -> 5 of 6 pairs
    assert m["auc"] == pytest.approx(5 / 6)
    assert m["per_class"]["myositis"]["support"] == 2
    assert m["n"] == 5
    json.dumps(m, allow_nan=False)  # JSON-safe


def test_multiclass_metrics_by_hand():
    names = ("normal", "IBM", "PM", "DM")
    y = [0, 0, 1, 1, 2, 3]
    pred = [0, 1, 1, 1, 3, 3]
    prob = np.full((6, 4), 0.1)
    prob[np.arange(6), pred] = 0.7
    m = M.fold_metrics(y, prob, names)
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 0 + 1) / 4)
    assert m["per_class"]["PM"]["sensitivity"] == 0.0
    # DM: 5 non-DM images, one (the PM image) called DM
    assert m["per_class"]["DM"]["specificity"] == pytest.approx(4 / 5)
    # F1: normal P1 R1/2 -> 2/3; IBM P2/3 R1 -> 4/5; PM 0; DM P1/2 R1 -> 2/3
    assert m["macro_f1"] == pytest.approx((2 / 3 + 4 / 5 + 0 + 2 / 3) / 4)
    # macro one-vs-rest AUC is the mean of the per-class AUCs
    per_class = [m["per_class"][c]["auc"] for c in names]
    assert m["auc"] == pytest.approx(np.mean(per_class))
    # normal: positives score .7 and .1, the four others .1: 4 wins + 4 ties (half each) of 8 pairs
    assert m["per_class"]["normal"]["auc"] == pytest.approx((4 * 1 + 4 * 0.5) / 8)


def test_absent_class_gives_none_not_nan():
    names = ("normal", "IBM", "PM", "DM")
    y = [0, 1, 1, 0]                       # no PM, no DM in this test part
    prob = np.eye(4)[[0, 1, 2, 0]] * 0.9 + 0.025
    m = M.fold_metrics(y, prob, names)
    assert m["auc"] is None
    assert m["per_class"]["PM"]["sensitivity"] is None
    assert m["per_class"]["PM"]["auc"] is None
    assert m["per_class"]["PM"]["specificity"] == pytest.approx(3 / 4)
    # balanced accuracy and macro-F1 average over the classes present: normal 1/1, IBM 1/2
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)
    json.dumps(m, allow_nan=False)


def test_binary_auc_none_when_one_class_only():
    m = M.fold_metrics([1, 1, 1], [[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]], BINARY)
    assert m["auc"] is None and m["accuracy"] == pytest.approx(2 / 3)


def test_fold_metrics_rejects_bad_shapes_and_labels():
    with pytest.raises(ValueError, match="shape"):
        M.fold_metrics([0, 1], [[1.0], [0.0]], BINARY)
    with pytest.raises(ValueError, match="outside"):
        M.fold_metrics([0, 2], [[1, 0], [0, 1]], BINARY)


def test_patient_level_mean_probability():
    df = pd.DataFrame({"patient_id": ["B", "A", "A", "C"], "label": [1, 0, 0, 1],
                       "prob_normal": [0.3, 0.6, 0.2, 0.9], "prob_myositis": [0.7, 0.4, 0.8, 0.1]})
    y, prob = M.patient_level(df, BINARY)
    assert y.tolist() == [0, 1, 1]                               # patients A, B, C
    np.testing.assert_allclose(prob, [[0.4, 0.6], [0.3, 0.7], [0.9, 0.1]])
    # A is misdiagnosed after averaging although one of A's images was right
    assert (prob.argmax(axis=1) == y).tolist() == [False, True, False]


def test_patient_level_refuses_mixed_labels():
    df = pd.DataFrame({"patient_id": ["A", "A"], "label": [0, 1], "prob_normal": [0.5, 0.5],
                       "prob_myositis": [0.5, 0.5]})
    with pytest.raises(DataError, match="'A'"):
        M.patient_level(df, BINARY)


def test_mean_sd_ci_by_hand():
    s = M.mean_sd_ci([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9)
    assert s["sd"] == pytest.approx(0.1)              # ddof=1
    half = 4.303 * 0.1 / math.sqrt(3)                 # t(0.975, 2) = 4.303 from tables
    assert s["ci_low"] == pytest.approx(0.9 - half, abs=1e-4)
    assert s["ci_high"] == pytest.approx(0.9 + half, abs=1e-4)
    clipped = M.mean_sd_ci([0.9, 1.0, 1.0], bounds=(0.0, 1.0))
    assert clipped["ci_high"] == 1.0 and clipped["ci_low"] < clipped["mean"]
    assert M.mean_sd_ci([0.9, 1.0, 1.0])["ci_high"] > 1.0                 # unclipped t interval
    assert M.mean_sd_ci([0.7, None, float("nan")]) == {"mean": 0.7, "sd": None, "ci_low": None, "ci_high": None, "n": 1}
    assert M.mean_sd_ci([])["mean"] is None


def test_holm_matches_the_step_down_procedure_by_hand():
    # Holm 1979: sorted p (0.01, 0.02, 0.03, 0.2) x (4, 3, 2, 1) = (0.04, 0.06, 0.06, 0.2), kept monotone
    assert M.holm([0.03, 0.2, 0.01, 0.02]) == pytest.approx([0.06, 0.2, 0.04, 0.06])
    assert M.holm([0.011] * 8)[0] == pytest.approx(0.088)      # the eight tests: none survives
    assert M.holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]   # capped; None skipped
    assert M.holm([]) == []


def test_degenerate_flags_chance_and_one_class_folds():
    assert M.degenerate([0.5, 0.51], [0.6, 0.7], 2) != []                  # balanced accuracy at chance
    assert M.degenerate([0.8, 0.75], [0.5, 0.96], 2) == ["fold 2 predicts one class for 96% of its test images"]
    assert M.degenerate([0.8, 0.75], [0.6, 0.7], 2) == []
    assert M.degenerate([0.27, 0.26], [0.5, 0.5], 4) != []                  # four classes: chance is 0.25


def test_the_bootstrap_resamples_patients_not_images():
    """Many images per patient, and a patient's images all right or all wrong: resampling images
    pretends there are 600 independent observations; resampling the 12 patients does not."""
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(12), 50)
    a_right = rng.random(12) < 0.7
    b_right = rng.random(12) < 0.5
    a, b = a_right[patients], b_right[patients]
    by_image = M.paired_bootstrap(a, b, n_resamples=2000, seed=1)
    by_patient = M.paired_bootstrap(a, b, groups=patients, n_resamples=2000, seed=1)
    assert by_patient["unit"] == "patient" and by_patient["n_clusters"] == 12 and by_image["n_clusters"] == 600
    assert by_patient["mean_difference"] == by_image["mean_difference"]
    width = lambda r: r["ci_high"] - r["ci_low"]  # noqa: E731
    assert width(by_patient) > 2.5 * width(by_image)
    assert by_patient["p_value"] > by_image["p_value"]
    ci = M.cluster_bootstrap_ci(a.astype(float), patients, n_resamples=2000, seed=1)
    assert ci["n_patients"] == 12 and ci["ci_low"] <= ci["mean"] <= ci["ci_high"]
    assert ci["ci_high"] - ci["ci_low"] > 0.3


def test_paired_bootstrap():
    same = M.paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1], n_resamples=200, seed=0)
    assert same["mean_difference"] == 0.0 and same["p_value"] == 1.0
    apart = M.paired_bootstrap([1] * 20, [0] * 20, n_resamples=200, seed=0)
    assert apart["mean_difference"] == 1.0 and apart["ci_low"] == 1.0
    assert apart["p_value"] == pytest.approx(2 / 201)      # (0 + 1) / (B + 1), two-sided
    again = M.paired_bootstrap([1, 0, 1, 0, 1], [0, 0, 1, 1, 0], n_resamples=300, seed=3)
    assert again == M.paired_bootstrap([1, 0, 1, 0, 1], [0, 0, 1, 1, 0], n_resamples=300, seed=3)


@pytest.mark.parametrize("seed", range(5))
def test_the_one_balanced_accuracy_is_sklearns(seed):
    """pipeline/core/scores.py (train's epoch selection, deploy's parity, evaluate's metric) against
    scikit-learn's balanced_accuracy_score, a class absent from the labels included; torch tensors too."""
    import torch
    from sklearn.metrics import balanced_accuracy_score

    from pipeline.core.scores import balanced_accuracy

    rng = np.random.default_rng(seed)
    labels = rng.choice([0, 2, 3] if seed % 2 else [0, 1], size=40)
    predicted = rng.integers(0, 4, size=40)
    want = balanced_accuracy_score(labels, predicted)
    assert balanced_accuracy(labels, predicted, 4) == pytest.approx(want, abs=1e-15)
    assert balanced_accuracy(torch.as_tensor(labels), torch.as_tensor(predicted), 4) == pytest.approx(want, abs=1e-15)
    with pytest.raises(ValueError, match="one prediction per label"):
        balanced_accuracy(labels, predicted[:-1])
