"""Classification metrics for one fold, patient-level aggregation, and summaries across folds.

The train stage calls `fold_metrics` for every fold's metrics.json and the evaluate stage
recomputes it from predictions.csv, so it imports only numpy and, lazily, scikit-learn and scipy.
`SUMMARY_METRICS` is the one list of metrics that evaluate, check and report share.
Everything returned is JSON-safe: plain floats and ints, with None where a quantity is undefined
(a class absent from the test part, a standard deviation of one fold).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from pipeline.errors import DataError
from pipeline.layout import prob_columns


@dataclass(frozen=True)
class Metric:
    """A per-fold metric that is summarised across folds, compared with the baseline and reported."""
    key: str            # the key in fold_metrics(), metrics.json and per_fold.csv
    label: str          # words for tables
    percent: bool       # shown (and checked against check.max_accuracy_drop) in percentage points
    paired_test: bool   # compared between models fold by fold (corrected resampled t-test)


# The one list of summary metrics: evaluate summarises these, check compares them, report shows them.
# To add one, compute it in fold_metrics() and add it here.
SUMMARY_METRICS: tuple[Metric, ...] = (
    Metric("accuracy", "Accuracy %", percent=True, paired_test=True),
    Metric("balanced_accuracy", "Balanced accuracy", percent=False, paired_test=True),
    Metric("macro_f1", "Macro-F1", percent=False, paired_test=True),
    Metric("auc", "AUC", percent=False, paired_test=False),
)


def _num(x: Any) -> float | None:
    """A plain float, or None for NaN, infinity or None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def fold_metrics(y_true: Sequence[int], prob: Any, class_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro-F1, per-class sensitivity/specificity/AUC, ROC AUC and
    confusion matrix of one test set; predictions are the arg-max of `prob` (n, C)."""
    from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score   # lazily: check reads the table only

    y_true = np.asarray(y_true, dtype=np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    n_classes = len(class_names)
    if prob.ndim != 2 or prob.shape != (len(y_true), n_classes):
        raise ValueError(f"prob has shape {prob.shape}; expected ({len(y_true)}, {n_classes}) "
                         f"for classes {list(class_names)}")
    if len(y_true) == 0:
        raise ValueError("no test samples: metrics of an empty set are undefined")
    if y_true.min() < 0 or y_true.max() >= n_classes:
        raise ValueError(f"labels {sorted(set(y_true.tolist()))} outside 0..{n_classes - 1} "
                         f"for classes {list(class_names)}")
    labels = list(range(n_classes))
    y_pred = prob.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    total = cm.sum()
    tp = np.diag(cm).astype(np.float64)
    positives = cm.sum(axis=1).astype(np.float64)      # true members of each class
    negatives = total - positives
    fp = cm.sum(axis=0) - tp
    tn = negatives - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        sensitivity = np.where(positives > 0, tp / positives, np.nan)
        specificity = np.where(negatives > 0, tn / negatives, np.nan)

    per_class_auc = []
    for c in labels:
        is_c = y_true == c
        # AUC needs both members and non-members of the class in y_true
        per_class_auc.append(roc_auc_score(is_c, prob[:, c]) if 0 < is_c.sum() < len(y_true) else np.nan)
    if n_classes == 2:
        auc = per_class_auc[1]
    else:
        # macro one-vs-rest, as sklearn's multi_class="ovr"; undefined when a class is absent
        auc = float(np.mean(per_class_auc)) if not np.isnan(per_class_auc).any() else np.nan

    return {
        "n": int(len(y_true)),
        "accuracy": _num(tp.sum() / total),
        # mean recall over the classes present in y_true (sklearn's balanced_accuracy_score)
        "balanced_accuracy": _num(np.nanmean(sensitivity)),
        # over the classes present in y_true, like balanced accuracy: an absent class has no F1
        "macro_f1": _num(f1_score(y_true, y_pred, labels=sorted(set(y_true.tolist())), average="macro",
                                  zero_division=0)),
        "auc": _num(auc),
        "per_class": {
            name: {"sensitivity": _num(sensitivity[c]), "specificity": _num(specificity[c]),
                   "auc": _num(per_class_auc[c]), "support": int(positives[c])}
            for c, name in enumerate(class_names)
        },
        "confusion_matrix": cm.astype(int).tolist(),
    }


def patient_level(pred_df: Any, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """One diagnosis per patient: the mean of the patient's image probabilities, with the
    patient's label; rows sorted by patient_id."""
    cols = prob_columns(class_names)
    missing = [c for c in ["patient_id", "label", *cols] if c not in pred_df.columns]
    if missing:
        raise DataError(f"predictions lack columns {missing}; expected patient_id, label and {cols}")
    groups = pred_df.groupby(pred_df["patient_id"].astype(str), sort=True)
    labels_per_patient = groups["label"].nunique()
    mixed = labels_per_patient[labels_per_patient > 1]
    if len(mixed):
        raise DataError(f"patient {mixed.index[0]!r} has images with different labels; "
                        f"a patient has one diagnosis")
    y_true = groups["label"].first().to_numpy(dtype=np.int64)
    prob = groups[cols].mean().to_numpy(dtype=np.float64)
    return y_true, prob


# ---- across folds ---------------------------------------------------------------------------

def _finite(values: Iterable[Any]) -> np.ndarray:
    return np.array([float(v) for v in values if v is not None and math.isfinite(float(v))])


def mean_sd_ci(values: Iterable[Any], confidence: float = 0.95,
               bounds: tuple[float, float] | None = None) -> dict:
    """Mean, sample sd (ddof=1) and t-distribution confidence interval of per-fold values;
    None/NaN values are left out, and `n` counts what was used. With `bounds` the interval is
    clipped to the metric's range (an accuracy interval never passes 1)."""
    from scipy import stats

    x = _finite(values)
    n = len(x)
    if n == 0:
        return {"mean": None, "sd": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "sd": None, "ci_low": None, "ci_high": None, "n": 1}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"mean": mean, "sd": sd, "ci_low": low, "ci_high": high, "n": n}


def corrected_resampled_ttest(differences: Sequence[float], n_train: float, n_test: float) -> dict:
    """Nadeau & Bengio (2003) corrected resampled t-test of paired per-fold differences.

    The folds' training sets overlap, so the plain paired t-test underestimates the variance;
    the correction replaces 1/k by 1/k + n_test/n_train. Two-sided p-value and 95% interval of
    the mean difference, k-1 degrees of freedom.
    """
    from scipy import stats

    d = _finite(differences)
    k = len(d)
    if k < 2:
        return {"mean_difference": _num(d.mean()) if k else None, "sd": None, "se": None, "t": None,
                "df": max(k - 1, 0), "p_value": None, "ci_low": None, "ci_high": None, "n_folds": k}
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train={n_train} and n_test={n_test} must be positive")
    mean = float(d.mean())
    var = float(d.var(ddof=1))
    se = math.sqrt((1.0 / k + n_test / n_train) * var)
    if np.ptp(d) == 0.0:
        # every fold gave the same difference: no evidence of variation either way
        t, p, se = (0.0, 1.0, 0.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0, 0.0)
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), k - 1))
    half = float(stats.t.ppf(0.975, k - 1)) * se
    return {"mean_difference": mean, "sd": math.sqrt(var), "se": se, "t": _num(t), "df": k - 1,
            "p_value": p, "ci_low": mean - half, "ci_high": mean + half, "n_folds": k}


def paired_bootstrap(correct_a: Sequence[bool], correct_b: Sequence[bool], n_resamples: int = 2000,
                     seed: int = 0, confidence: float = 0.95) -> dict:
    """Paired bootstrap over test images of the accuracy difference a - b: mean difference,
    percentile interval and two-sided p-value (share of resamples on the other side of 0, doubled)."""
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired samples must be equal-length, non-empty 1-d; got {a.shape} and {b.shape}")
    d = a - b
    n = len(d)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // n)  # bound memory at about 16 MB of indices per chunk
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        boots[start:stop] = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    # (count + 1) / (B + 1): a resampling p-value is never exactly 0 (Davison & Hinkley 1997)
    tail = min(int((boots <= 0).sum()), int((boots >= 0).sum()))
    p = min(1.0, 2 * (tail + 1) / (n_resamples + 1))
    return {"mean_difference": float(d.mean()), "ci_low": float(np.quantile(boots, alpha)),
            "ci_high": float(np.quantile(boots, 1 - alpha)), "p_value": p, "n_images": n,
            "n_resamples": int(n_resamples)}
