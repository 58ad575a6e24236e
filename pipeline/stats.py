"""The statistics a comparison of two learners needs, and what a clinical reader needs of one model.

References are in the project's STATISTICS notes:
- `repeated_kfold_ttest`: the corrected repeated k-fold t-test (Bouckaert & Frank 2004); with one
  repeat it is Nadeau & Bengio's (2003) corrected resampled t-test over k folds;
- `minimum_detectable_difference`, `power`, `repeats_needed`, `patients_needed`: what that test can
  detect (two-sided level alpha, power 1 - beta, from the observed variance of the differences);
- `clopper_pearson`: exact binomial interval (scipy's `binomtest(...).proportion_ci`);
- `calibration`: Brier score, expected calibration error and the reliability curve (scikit-learn's
  `calibration_curve`, equal-width bins);
- `class_rates`: per-class sensitivity, specificity, PPV and NPV with patient-cluster bootstrap intervals;
- `failed_folds`: the folds on which a model failed (one class predicted, or balanced accuracy at chance).
Everything returned is JSON-safe (plain floats, None where undefined).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from pipeline.metrics import (DEGENERATE_MARGIN, DEGENERATE_ONE_CLASS_SHARE, _cluster_sums, _finite, _num,  # noqa: F401
                              _resampled_means, calibration)   # calibration lives in metrics: fold_metrics needs it

ALPHA = 0.05
POWER = 0.80
# differences whose spread is below this share of their scale (or below ZERO_VARIANCE_ATOL) have zero
# variance: 0.7-0.6, 0.8-0.7 and 0.9-0.8 are equal in decimal but differ in binary by 1e-16
ZERO_VARIANCE_RTOL = 1e-9
ZERO_VARIANCE_ATOL = 1e-12


def zero_variance(d: Sequence[float]) -> bool:
    """True when the differences are all equal up to a tolerance relative to their scale."""
    d = np.asarray(d, dtype=np.float64)
    return bool(np.ptp(d) <= max(ZERO_VARIANCE_RTOL * float(np.abs(d).max()), ZERO_VARIANCE_ATOL))


def _variance_factor(n_differences: int, n_train: float, n_test: float) -> float:
    """1/(k*r) + n_test/n_train: the corrected variance multiplier (training sets overlap)."""
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train={n_train} and n_test={n_test} must be positive")
    return 1.0 / n_differences + n_test / n_train


def _t_sum(df: int, alpha: float, power: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df))


def minimum_detectable_difference(sd: float, n_differences: int, n_train: float, n_test: float,
                                  alpha: float = ALPHA, power: float = POWER) -> float:
    """(t_{1-alpha/2,df} + t_{power,df}) * sqrt((1/(k*r) + n_test/n_train) * s^2), df = k*r - 1."""
    if n_differences < 2:
        raise ValueError(f"{n_differences} difference(s): the test needs at least 2")
    se = math.sqrt(_variance_factor(n_differences, n_train, n_test)) * sd
    return _t_sum(n_differences - 1, alpha, power) * se


def power(delta: float, sd: float, n_differences: int, n_train: float, n_test: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided corrected test to detect a true difference `delta` (noncentral t)."""
    from scipy import stats

    df = n_differences - 1
    se = math.sqrt(_variance_factor(n_differences, n_train, n_test)) * sd
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    ncp = delta / se
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def repeats_needed(delta: float, sd: float, folds: int, n_train: float, n_test: float, alpha: float = ALPHA,
                   power: float = POWER, max_repeats: int = 100) -> int | None:
    """The fewest repeats of k-fold CV whose test detects `delta` with `power`, at this variance; None
    when even `max_repeats` do not (the n_test/n_train term does not shrink with repeats)."""
    for r in range(1, max_repeats + 1):
        if minimum_detectable_difference(sd, folds * r, n_train, n_test, alpha, power) <= delta:
            return r
    return None


def patients_needed(delta: float, mdd: float, n_patients: int) -> int:
    """Roughly how many patients this design (same folds, repeats and degrees of freedom) needs to
    detect `delta`: the variance of the fold differences falls about as 1/patients, so the MDD falls
    as 1/sqrt(patients)."""
    return int(math.ceil(n_patients * (mdd / delta) ** 2))


def repeated_kfold_ttest(differences: Sequence[float], n_train: float, n_test: float, folds: int | None = None,
                         repeats: int = 1, confidence: float = 0.95) -> dict:
    """Corrected repeated k-fold t-test (Bouckaert & Frank 2004) of the k*r paired differences:
    t = m / sqrt((1/(k*r) + n_test/n_train) s^2), df = k*r - 1; two-sided p, the interval of the mean
    difference at `confidence`, and the difference it detects with 80% power (`mdd`). With zero
    variance (up to a relative tolerance) t is undefined: p is None with the reason, never 0 or 1."""
    from scipy import stats

    d = _finite(differences)
    j = len(d)
    if folds is not None and j != folds * repeats:
        raise ValueError(f"{j} differences for {folds} folds x {repeats} repeats")
    base = {"mean_difference": _num(d.mean()) if j else None, "sd": None, "se": None, "t": None,
            "df": max(j - 1, 0), "p_value": None, "ci_low": None, "ci_high": None, "mdd": None,
            "n_differences": j, "n_repeats": int(repeats)}
    if j < 2:
        return {**base, "p_undefined": f"{j} difference(s): a paired t-test needs at least 2"}
    factor = _variance_factor(j, n_train, n_test)
    mean = float(d.mean())
    if zero_variance(d):
        return {**base, "sd": 0.0, "se": 0.0,
                "p_undefined": f"every fold gave the same difference ({mean:+.4f}): with zero variance the t "
                               f"statistic is undefined, which is no evidence either way"}
    sd = float(d.std(ddof=1))
    se = math.sqrt(factor) * sd
    t = mean / se
    half = float(stats.t.ppf(0.5 + confidence / 2, j - 1)) * se
    return {**base, "sd": sd, "se": se, "t": _num(t), "p_value": float(2 * stats.t.sf(abs(t), j - 1)),
            "ci_low": mean - half, "ci_high": mean + half,
            "mdd": minimum_detectable_difference(sd, j, n_train, n_test)}


def design(test: dict, target: float, folds: int, n_train: float, n_test: float, n_patients: int) -> dict:
    """What the design behind `test` can detect: its MDD, its power at `target`, and the repeats (at
    this variance) or, roughly, the patients it would need to detect `target` with 80% power."""
    sd, j = test.get("sd"), test.get("n_differences", 0)
    if not sd or j < 2:
        return {"target": target, "mdd": None, "power_at_target": None, "repeats_needed": None,
                "patients_needed": None}
    mdd = minimum_detectable_difference(sd, j, n_train, n_test)
    return {"target": target, "mdd": mdd, "power_at_target": power(target, sd, j, n_train, n_test),
            "repeats_needed": repeats_needed(target, sd, folds, n_train, n_test),
            "patients_needed": patients_needed(target, mdd, n_patients)}


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> dict:
    """Exact binomial interval of a proportion."""
    from scipy.stats import binomtest

    if n <= 0:
        return {"k": int(successes), "n": int(n), "proportion": None, "ci_low": None, "ci_high": None}
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return {"k": int(successes), "n": int(n), "proportion": successes / n, "ci_low": float(ci.low),
            "ci_high": float(ci.high)}


def ratio_bootstrap(numerator: np.ndarray, denominator: np.ndarray, groups: Sequence[Any], n_resamples: int,
                    seed: int, confidence: float = 0.95) -> dict:
    """Estimate sum(num)/sum(den) with a percentile interval resampling whole clusters (patients)."""
    num_sums, _ = _cluster_sums(np.asarray(numerator, dtype=np.float64), groups)
    den_sums, _ = _cluster_sums(np.asarray(denominator, dtype=np.float64), groups)
    total = float(den_sums.sum())
    if total == 0:
        return {"estimate": None, "ci_low": None, "ci_high": None, "k": 0, "n": 0}
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = _resampled_means(num_sums, den_sums, n_resamples, seed)
    alpha = (1 - confidence) / 2
    return {"estimate": float(num_sums.sum()) / total, "ci_low": _num(np.nanquantile(boots, alpha)),
            "ci_high": _num(np.nanquantile(boots, 1 - alpha)), "k": int(num_sums.sum()), "n": int(total)}


def class_rates(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str], groups: Sequence[Any],
                n_resamples: int = 2000, seed: int = 0) -> dict:
    """Per class (one against the rest): sensitivity, specificity, PPV and NPV over the pooled test
    images, each with a percentile interval resampling whole patients."""
    y, yp = np.asarray(y_true), np.asarray(y_pred)
    out = {}
    for c, name in enumerate(class_names):
        pos, hit = y == c, yp == c
        parts = {"sensitivity": (pos & hit, pos), "specificity": (~pos & ~hit, ~pos),
                 "ppv": (pos & hit, hit), "npv": (~pos & ~hit, ~hit)}
        out[name] = {q: ratio_bootstrap(num, den, groups, n_resamples, seed) for q, (num, den) in parts.items()}
    return out


def failed_folds(balanced_accuracies: Sequence[float | None], top_predicted_shares: Sequence[float | None],
                 labels: Sequence[str], n_classes: int) -> list[dict]:
    """The folds on which a model failed: it predicts one class for at least DEGENERATE_ONE_CLASS_SHARE
    of the fold's images, or scores balanced accuracy at most chance + DEGENERATE_MARGIN there."""
    chance = 1.0 / n_classes
    out = []
    for label, bal, share in zip(labels, balanced_accuracies, top_predicted_shares, strict=True):
        reasons = []
        if share is not None and share >= DEGENERATE_ONE_CLASS_SHARE:
            reasons.append(f"predicts one class for {100 * share:.1f}% of its images")
        if bal is not None and bal <= chance + DEGENERATE_MARGIN:
            reasons.append(f"balanced accuracy {bal:.3f} is at most chance {chance:.3f} + {DEGENERATE_MARGIN}")
        if reasons:
            out.append({"fold": label, "reasons": reasons})
    return out
