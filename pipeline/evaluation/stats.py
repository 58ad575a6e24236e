"""The statistics a comparison of two learners needs, and what a clinical reader needs of one model.

References are in the project's STATISTICS notes:
- `repeated_kfold_ttest`: the corrected repeated k-fold t-test (Bouckaert & Frank 2004); with one
  repeat it is Nadeau & Bengio's (2003) corrected resampled t-test over k folds;
- `minimum_detectable_difference` (`exact_mdd`), `power`, `repeats_needed`, `design_exact`: what that
  test can detect (two-sided level alpha, power 1 - beta, noncentral t, from the observed variance of the
  differences, with the uncertainty of that variance);
- `clopper_pearson`: exact binomial interval (scipy's `binomtest(...).proportion_ci`);
- `calibration`: Brier score, expected calibration error and the reliability curve (scikit-learn's
  `calibration_curve`, equal-width bins);
- `patient_bootstrap`: per-class sensitivity, specificity, PPV and NPV, AUC, Brier and ECE with intervals
  from one stratified patient bootstrap (patients resampled within their class);
- `exact_mcnemar`, `holm_interval`, `sensitivity_threshold`: the patient-level paired test, the interval
  of a Holm step, the validation-chosen operating point;
- `failed_folds`: the folds on which a model failed (one class predicted, or balanced accuracy at chance).
Everything returned is JSON-safe (plain floats, None where undefined).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from pipeline.evaluation.metrics import (DEGENERATE_MARGIN, DEGENERATE_ONE_CLASS_SHARE, _cluster_sums, _finite, _num,  # noqa: F401
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
    """The difference the corrected test detects with `power`: solved with the noncentral t (`exact_mdd`).
    The normal-approximation formula (t_{1-alpha/2,df} + t_{power,df}) x se is off at few degrees of freedom
    (at df 2 its MDD has 77% power, not 80%)."""
    return exact_mdd(sd, n_differences, n_train, n_test, alpha, power)


def power(delta: float, sd: float, n_differences: int, n_train: float, n_test: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided corrected test to detect a true difference `delta` (noncentral t)."""
    from scipy import stats

    df = n_differences - 1
    se = math.sqrt(_variance_factor(n_differences, n_train, n_test)) * sd
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    ncp = delta / se
    # far in a tail scipy's noncentral t returns NaN for what is 0 (or, for the upper tail, 1)
    upper, lower = float(stats.nct.sf(crit, df, ncp)), float(stats.nct.cdf(-crit, df, ncp))
    return float(np.nan_to_num(upper, nan=1.0 if ncp > 0 else 0.0) + np.nan_to_num(lower, nan=1.0 if ncp < 0 else 0.0))


def repeats_needed(delta: float, sd: float, folds: int, n_train: float, n_test: float, alpha: float = ALPHA,
                   power: float = POWER, max_repeats: int = 100) -> int | None:
    """The fewest repeats of k-fold CV whose test detects `delta` with `power`, at this variance; None
    when even `max_repeats` do not (the n_test/n_train term does not shrink with repeats: `mdd_limit`)."""
    for r in range(1, max_repeats + 1):
        if exact_mdd(sd, folds * r, n_train, n_test, alpha, power) <= delta:
            return r
    return None


def corrected_half_width(values: Sequence[float], n_test: float, n_train: float, repeats: int = 1) -> float | None:
    """Half-width of the 95% interval of the mean of the k*R fold values from the corrected repeated k-fold
    t-test (`repeated_kfold_ttest`, the one implementation; the figures' error bars); 0 when every fold gave
    the same value, None with fewer than two values or no training part."""
    if not n_train or not n_test:
        return None
    t = repeated_kfold_ttest(values, n_train, n_test, repeats=repeats)
    if t["ci_low"] is None:
        return 0.0 if t["sd"] == 0.0 else None
    return (t["ci_high"] - t["ci_low"]) / 2


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


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> dict:
    """Exact binomial interval of a proportion."""
    from scipy.stats import binomtest

    if n <= 0:
        return {"k": int(successes), "n": int(n), "proportion": None, "ci_low": None, "ci_high": None}
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return {"k": int(successes), "n": int(n), "proportion": successes / n, "ci_low": float(ci.low),
            "ci_high": float(ci.high)}


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


# ---- the patient bootstrap, stratified by class (issue 34) ------------------------------------------
#
# One resample draws, within each class, as many patients as that class has, with replacement: every
# resample keeps the cohort's class counts, so prevalence does not vary from resample to resample (it is a
# property of the cohort, not an uncertainty of the model) and PPV and NPV intervals do not take it in.
# A resample is a matrix of weights: how often each image is drawn (its patient's count). Every statistic
# below is a weighted one, so one draw serves sensitivity, specificity, PPV, NPV, Brier, ECE and AUC alike.

def stratified_patient_counts(groups: Sequence[Any], strata: Sequence[Any], n_resamples: int,
                              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(patient index of every image, counts): counts[b, p] is how often patient p is drawn in resample b,
    patients drawn with replacement within their stratum (their class), so each stratum keeps its
    number of patients. A patient whose images lie in two strata is refused (a patient has one diagnosis)."""
    g = np.asarray(groups).astype(str)
    s = np.asarray(strata)
    if len(g) != len(s) or len(g) == 0:
        raise ValueError(f"{len(g)} group labels for {len(s)} strata: need equal, non-zero lengths")
    patients, index = np.unique(g, return_inverse=True)
    stratum_of = {}
    for p, st in zip(index.tolist(), s.tolist()):
        if stratum_of.setdefault(p, st) != st:
            raise ValueError(f"patient {patients[p]!r} has images in strata {stratum_of[p]!r} and {st!r}; a patient "
                             f"has one class")
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_resamples, len(patients)), dtype=np.float64)
    rows = np.arange(n_resamples)[:, None]
    for st in sorted(set(stratum_of.values()), key=str):
        members = np.array(sorted(p for p, x in stratum_of.items() if x == st))
        drawn = members[rng.integers(0, len(members), size=(n_resamples, len(members)))]
        np.add.at(counts, (np.broadcast_to(rows, drawn.shape), drawn), 1.0)
    return index, counts


def image_weights(index: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(resamples, images): each image weighted by how often its patient was drawn."""
    return counts[:, index]


def _interval(boots: np.ndarray, confidence: float = 0.95) -> tuple[float | None, float | None]:
    alpha = (1 - confidence) / 2
    boots = boots[np.isfinite(boots)]
    if not len(boots):
        return None, None
    return _num(np.quantile(boots, alpha)), _num(np.quantile(boots, 1 - alpha))


def weighted_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of `score` for the binary labels `y` under each row of `weights` (resamples x images):
    the weighted Mann-Whitney statistic, ties counted one half (scikit-learn's roc_auc_score with
    sample_weight). NaN where a resample has no positive or no negative weight."""
    w = np.atleast_2d(weights)
    order = np.argsort(score, kind="mergesort")
    s, pos = score[order], np.asarray(y, dtype=bool)[order]
    w = w[:, order]
    _, start, size = np.unique(s, return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(start)), size)
    neg_w = np.where(pos, 0.0, w)
    cum = np.cumsum(neg_w, axis=1)
    end = start + size - 1
    below = np.where(start > 0, cum[:, np.maximum(start - 1, 0)], 0.0)
    tied = cum[:, end] - below
    credit = below[:, group] + 0.5 * tied[:, group]
    pos_w = np.where(pos, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos_w * credit).sum(axis=1) / (pos_w.sum(axis=1) * neg_w.sum(axis=1))


def weighted_auc_multi(y: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The AUC fold_metrics reports, weighted: binary, of the second class's probability; otherwise the
    macro mean of the one-against-the-rest AUCs."""
    if prob.shape[1] == 2:
        return weighted_auc(y == 1, prob[:, 1], weights)
    return np.mean([weighted_auc(y == c, prob[:, c], weights) for c in range(prob.shape[1])], axis=0)


def _bin_ece(y: np.ndarray, p: np.ndarray, weights: np.ndarray, n_bins: int) -> np.ndarray:
    """Expected calibration error of the probability `p` of the event `y` (0/1) over `n_bins` equal-width
    bins, under each row of `weights`: sum over bins of |weighted events - weighted probability| / total."""
    bins = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], p)   # calibration_curve's bins
    onehot = np.eye(n_bins)[bins]                        # images x bins
    w = np.atleast_2d(weights)
    events, probs = w @ (onehot * y[:, None]), w @ (onehot * p[:, None])
    return np.abs(events - probs).sum(axis=1) / w.sum(axis=1)


def weighted_ece(y: np.ndarray, prob: np.ndarray, weights: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """ECE as the reliability figure draws it: binary, of the positive (second) class's probability
    against its observed frequency; with more classes, the classwise ECE (Kull et al. 2019), the mean
    over classes of each class's probability against its frequency. All `n_bins` bins are used."""
    y = np.asarray(y)
    if prob.shape[1] == 2:
        return _bin_ece((y == 1).astype(np.float64), prob[:, 1], weights, n_bins)
    return np.mean([_bin_ece((y == c).astype(np.float64), prob[:, c], weights, n_bins)
                    for c in range(prob.shape[1])], axis=0)


def weighted_brier(y: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Brier score under each row of `weights` (binary: of the positive class; else the multi-class sum)."""
    per_image = ((prob - np.eye(prob.shape[1])[y]) ** 2).sum(axis=1)
    if prob.shape[1] == 2:
        per_image = per_image / 2
    w = np.atleast_2d(weights)
    return (w @ per_image) / w.sum(axis=1)


def weighted_balanced_accuracy(y: np.ndarray, correct: np.ndarray, n_classes: int, weights: np.ndarray) -> np.ndarray:
    """Mean over the classes present of the weighted recall, under each row of `weights`."""
    w = np.atleast_2d(weights)
    recalls = []
    for c in range(n_classes):
        member = (y == c).astype(np.float64)
        if member.sum() == 0:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append((w @ (member * correct)) / (w @ member))
    return np.nanmean(np.vstack(recalls), axis=0)


def ppv_npv_at(sensitivity: Any, specificity: Any, prevalence: float) -> tuple[Any, Any]:
    """Bayes' formula: PPV and NPV of a test with this sensitivity and specificity where the condition has
    `prevalence` (elementwise over arrays)."""
    se, sp, pi = np.asarray(sensitivity, dtype=np.float64), np.asarray(specificity, dtype=np.float64), prevalence
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = se * pi / (se * pi + (1 - sp) * (1 - pi))
        npv = sp * (1 - pi) / (sp * (1 - pi) + (1 - se) * pi)
    return ppv, npv


CHUNK = 256   # resamples per block of weights: bounds memory at CHUNK x images doubles per array


def patient_bootstrap(y_true: Sequence[int], prob: Any, groups: Sequence[Any], n_resamples: int, seed: int,
                      prevalence: float | None = None, y_pred: Sequence[int] | None = None,
                      confidence: float = 0.95) -> dict:
    """Per class (one against the rest) sensitivity, specificity, PPV and NPV, and the pooled AUC, Brier
    score and ECE, each with a percentile interval from one stratified patient bootstrap (patients
    resampled within their class). `y_pred` defaults to the arg-max of `prob`. With `prevalence` (of the
    positive, second class of a binary problem) PPV and NPV are also given at that prevalence, from
    each resample's own sensitivity and specificity (Bayes' formula); `prevalence_cohort` is the
    share of the pooled images of each class, the one the plain PPV and NPV carry."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(prob, dtype=np.float64)
    yp = p.argmax(axis=1) if y_pred is None else np.asarray(y_pred, dtype=np.int64)
    n_classes = p.shape[1]
    index, counts = stratified_patient_counts(groups, y, n_resamples, seed)
    ones = np.ones((1, len(y)))
    quantities: dict[str, list[np.ndarray]] = {}

    def add(key: str, chunk_values: np.ndarray) -> None:
        quantities.setdefault(key, []).append(chunk_values)

    def rates(w: np.ndarray, prefix: str) -> None:
        for c in range(n_classes):
            pos, hit = y == c, yp == c
            for q, (num, den) in {"sensitivity": (pos & hit, pos), "specificity": (~pos & ~hit, ~pos),
                                  "ppv": (pos & hit, hit), "npv": (~pos & ~hit, ~hit)}.items():
                with np.errstate(invalid="ignore", divide="ignore"):
                    add(f"{prefix}{c}/{q}", (w @ num.astype(np.float64)) / (w @ den.astype(np.float64)))
        add(f"{prefix}auc", weighted_auc_multi(y, p, w))
        add(f"{prefix}brier", weighted_brier(y, p, w))
        add(f"{prefix}ece", weighted_ece(y, p, w))

    rates(ones, "point:")
    for start in range(0, n_resamples, CHUNK):
        rates(image_weights(index, counts[start:start + CHUNK]), "")
    values = {k: np.concatenate(v) for k, v in quantities.items()}

    def entry(key: str, boots: np.ndarray | None = None, point: float | None = None) -> dict:
        est = _num(values[f"point:{key}"][0]) if point is None else _num(point)
        low, high = _interval(values[key] if boots is None else boots, confidence)
        return {"estimate": est, "ci_low": low, "ci_high": high}

    out: dict[str, Any] = {"classes": {}, "unit": "patient, resampled within its class (stratified cluster "
                                                  "bootstrap)", "n_resamples": int(n_resamples),
                           "n_patients": int(counts.shape[1]), "n_images": int(len(y))}
    shares = np.bincount(y, minlength=n_classes) / len(y)
    for c in range(n_classes):
        out["classes"][c] = {q: entry(f"{c}/{q}") for q in ("sensitivity", "specificity", "ppv", "npv")}
        out["classes"][c]["prevalence_cohort"] = float(shares[c])
    if prevalence is not None and n_classes == 2:
        for c, pi in ((1, prevalence), (0, 1 - prevalence)):
            se, sp = values[f"{c}/sensitivity"], values[f"{c}/specificity"]
            ppv, npv = ppv_npv_at(se, sp, pi)
            p_ppv, p_npv = ppv_npv_at(values[f"point:{c}/sensitivity"], values[f"point:{c}/specificity"], pi)
            out["classes"][c]["ppv_at_prevalence"] = {**entry(f"{c}/ppv", ppv, float(p_ppv[0])), "prevalence": pi}
            out["classes"][c]["npv_at_prevalence"] = {**entry(f"{c}/npv", npv, float(p_npv[0])), "prevalence": pi}
    for key in ("auc", "brier", "ece"):
        out[key] = entry(key)
    return out


def paired_balanced_accuracy_bootstrap(y: Sequence[int], correct_a: Sequence[bool], correct_b: Sequence[bool],
                                       groups: Sequence[Any], n_classes: int, n_resamples: int, seed: int,
                                       confidence: float = 0.95) -> dict:
    """Balanced accuracy of a minus b over the same pooled test images, with a percentile interval from the
    stratified patient bootstrap (the metric of the corrected test, not accuracy)."""
    y = np.asarray(y, dtype=np.int64)
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    index, counts = stratified_patient_counts(groups, y, n_resamples, seed)
    ones = np.ones((1, len(y)))
    point = float((weighted_balanced_accuracy(y, a, n_classes, ones) - weighted_balanced_accuracy(y, b, n_classes, ones))[0])
    boots = np.concatenate([
        weighted_balanced_accuracy(y, a, n_classes, w) - weighted_balanced_accuracy(y, b, n_classes, w)
        for w in (image_weights(index, counts[s:s + CHUNK]) for s in range(0, n_resamples, CHUNK))])
    low, high = _interval(boots, confidence)
    return {"metric": "balanced_accuracy", "mean_difference": point, "ci_low": low, "ci_high": high,
            "n_images": int(len(y)), "n_patients": int(counts.shape[1]), "n_resamples": int(n_resamples),
            "unit": "patient, resampled within its class"}


def exact_mcnemar(ref_right: Sequence[bool], other_right: Sequence[bool]) -> dict:
    """Exact McNemar test of two paired classifiers: the discordant pairs (one right, the other wrong)
    against Binomial(discordant, 1/2), two-sided (scipy's binomtest)."""
    from scipy.stats import binomtest

    a, b = np.asarray(ref_right, dtype=bool), np.asarray(other_right, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes of shapes {a.shape} and {b.shape}")
    ref_only, other_only = int((a & ~b).sum()), int((~a & b).sum())
    n = ref_only + other_only
    return {"n": int(len(a)), "both_right": int((a & b).sum()), "both_wrong": int((~a & ~b).sum()),
            "reference_only_right": ref_only, "comparator_only_right": other_only, "discordant": n,
            "p_value": float(binomtest(ref_only, n, 0.5).pvalue) if n else None,
            "p_undefined": None if n else "no discordant patients: the two diagnose every patient alike"}


def exact_mdd(sd: float, n_differences: int, n_train: float, n_test: float, alpha: float = ALPHA,
              power_target: float = POWER) -> float:
    """The difference the corrected test detects with `power_target`, solved with the noncentral t that
    `power` uses (not the normal approximation (t_{1-alpha/2} + t_power) x se, which is off at few df)."""
    from scipy.optimize import brentq

    if n_differences < 2 or not sd or sd <= 0:
        raise ValueError(f"{n_differences} difference(s) with sd {sd}: the test needs at least 2 and a spread")
    se = math.sqrt(_variance_factor(n_differences, n_train, n_test)) * sd
    return float(brentq(lambda d: power(d, sd, n_differences, n_train, n_test, alpha) - power_target,
                        1e-6 * se, 40 * se, xtol=1e-10 * se, rtol=1e-10))


def sd_interval(sd: float, df: int, confidence: float = 0.95) -> tuple[float, float]:
    """The interval of a standard deviation estimated on `df` degrees of freedom (chi-square)."""
    from scipy import stats

    a = (1 - confidence) / 2
    return (sd * math.sqrt(df / stats.chi2.ppf(1 - a, df)), sd * math.sqrt(df / stats.chi2.ppf(a, df)))


def mdd_limit(sd: float, n_train: float, n_test: float, alpha: float = ALPHA, power_target: float = POWER) -> float:
    """What infinitely many repeats of these folds would detect: the variance keeps its n_test/n_train part
    and the test becomes a z-test, so the MDD falls to (z_{1-alpha/2} + z_power) x sd x sqrt(n_test/n_train)."""
    from scipy import stats

    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power_target)) * sd * math.sqrt(n_test / n_train))


def design_exact(test: dict, target: float, folds: int, n_train: float, n_test: float, max_repeats: int = 100) -> dict:
    """What the design behind `test` can say about `target`: the exact 80% MDD, the power at `target`, the
    95% interval of the fold differences' sd (on n_differences - 1 df) and the MDDs it implies, the MDD
    that no number of repeats goes below (with its range), and the repeats that would detect `target` at
    the point estimate and at each end of the sd's interval (None: not within `max_repeats`)."""
    sd, j = test.get("sd"), test.get("n_differences", 0)
    if not sd or j < 2:
        return {"target": target, "mdd": None, "power_at_target": None}
    low, high = sd_interval(sd, j - 1)

    def repeats(s: float) -> int | None:
        return repeats_needed(target, s, folds, n_train, n_test, max_repeats=max_repeats)

    return {"target": target, "mdd": exact_mdd(sd, j, n_train, n_test),
            "power_at_target": power(target, sd, j, n_train, n_test),
            "sd": sd, "sd_ci_low": low, "sd_ci_high": high, "sd_df": j - 1,
            "mdd_range": [exact_mdd(low, j, n_train, n_test), exact_mdd(high, j, n_train, n_test)],
            "mdd_limit": mdd_limit(sd, n_train, n_test),
            "mdd_limit_range": [mdd_limit(low, n_train, n_test), mdd_limit(high, n_train, n_test)],
            "repeats_needed": repeats(sd), "repeats_needed_range": [repeats(low), repeats(high)],
            "max_repeats": max_repeats}


def holm_interval(test: dict, rank: int, family_size: int, alpha: float = ALPHA) -> dict:
    """The interval consistent with Holm's step `rank` (0: the smallest p) of `family_size` tests: the
    corrected t interval at level alpha / (family_size - rank) (Bonferroni-widened at that step)."""
    from scipy import stats

    level = alpha / (family_size - rank)
    if test.get("se") in (None, 0) or test.get("mean_difference") is None:
        return {"holm_level": level, "ci_holm_low": None, "ci_holm_high": None}
    half = float(stats.t.ppf(1 - level / 2, test["df"])) * test["se"]
    return {"holm_level": level, "ci_holm_low": test["mean_difference"] - half,
            "ci_holm_high": test["mean_difference"] + half}


def sensitivity_threshold(positive: Sequence[bool], score: Sequence[float], target: float) -> float:
    """The highest threshold t on `score` at which at least `target` of the positives score >= t: the
    operating point of a screening test, chosen on the data given (a validation part, never a test part).
    With no positive, 0.5 (the argmax point of two classes)."""
    pos = np.sort(np.asarray(score, dtype=np.float64)[np.asarray(positive, dtype=bool)])[::-1]
    if not len(pos):
        return 0.5
    k = max(1, int(math.ceil(target * len(pos) - 1e-9)))   # the k-th highest positive score keeps k of them
    return float(pos[k - 1])


def projected_mdd(primary: dict, folds: int, repeats: int, patients: int, val_share: float) -> list[dict]:
    """What another design (e.g. profiles/paper.yaml: `folds` x `repeats` on `patients`) would detect with
    80% power, projected from a run's primary comparison under stated assumptions about the fold
    differences' sd: as observed; scaled by patients (sd x sqrt(n_here / n_there), as if the spread were
    sampling noise of the test parts alone); and the upper bound of its 95% interval, plain and scaled.
    n_test/n_train of the other design: a 1/folds test share, the rest split as here (`val_share` of it
    validation). A projection, not a measurement: the sd of a few fold differences is itself uncertain
    (its interval spans a factor of ten on 2 degrees of freedom), so the rows bracket, they do not decide."""
    test, design = primary["test"], primary.get("design") or {}
    sd, high, n_here = test.get("sd"), design.get("sd_ci_high"), primary.get("n_patients")
    if not sd or not high or not n_here:
        return []
    j = folds * repeats
    n_test, n_train = 1.0 / folds, (1 - 1.0 / folds) * (1 - val_share)
    scale = math.sqrt(n_here / patients)
    target = design.get("target")
    rows = []
    for words, s in ((f"sd as observed ({100 * sd:.1f} points)", sd),
                     (f"sd as observed, scaled by patients (x sqrt({n_here}/{patients}))", sd * scale),
                     (f"sd at the upper bound of its 95% interval ({100 * high:.1f} points)", high),
                     ("upper bound, scaled by patients", high * scale)):
        rows.append({"assumption": words, "sd": s, "mdd": exact_mdd(s, j, n_train, n_test),
                     "power_at_target": power(target, s, j, n_train, n_test) if target else None})
    return rows
