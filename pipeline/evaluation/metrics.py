"""Classification metrics for one fold, patient-level aggregation, and summaries across folds.

The evaluate stage computes `fold_metrics` from each run's predictions.csv (train writes no test metric,
so a metric added here reruns evaluate and report only); it imports only numpy and, lazily,
scikit-learn and scipy.
`SUMMARY_METRICS` is the one list of metrics that evaluate, check and report share.
Everything returned is JSON-safe: plain floats and ints, with None where a quantity is undefined
(a class absent from the test part, a standard deviation of one fold).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from pipeline.core.errors import DataError
from pipeline.core.layout import prob_columns
from pipeline.core.scores import balanced_accuracy


# A model "did not learn" under a protocol when its balanced accuracy is within this of chance, or
# when any fold's predictions are (nearly) one class: such a model is marked degenerate and no claim
# is made against it (a comparison with a constant predictor says nothing about the other model).
DEGENERATE_MARGIN = 0.02
DEGENERATE_ONE_CLASS_SHARE = 0.95


@dataclass(frozen=True)
class Metric:
    """A per-fold metric that is summarised across folds, compared with the baseline and reported."""
    key: str            # the key in fold_metrics(), metrics.json and per_fold.csv
    label: str          # words for tables
    percent: bool       # shown (and checked against check.max_accuracy_drop) in percentage points
    paired_test: bool   # compared between models fold by fold (corrected repeated k-fold t-test)
    higher_is_better: bool = True   # False: a rise is the regression (Brier score, calibration error)


# The one list of summary metrics: evaluate summarises these, check compares them, report shows them.
# To add one, compute it in fold_metrics() and add it here. Balanced accuracy leads: the headline metric
# of tables and the reading (the classes are imbalanced, so plain accuracy rewards the larger class).
SUMMARY_METRICS: tuple[Metric, ...] = (
    Metric("balanced_accuracy", "Balanced accuracy", percent=False, paired_test=True),
    Metric("accuracy", "Accuracy %", percent=True, paired_test=True),
    Metric("macro_f1", "Macro-F1", percent=False, paired_test=True),
    Metric("auc", "AUC", percent=False, paired_test=True),
    Metric("brier", "Brier score", percent=False, paired_test=False, higher_is_better=False),
    Metric("ece", "ECE", percent=False, paired_test=False, higher_is_better=False),
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
        # mean recall over the classes present in y_true (pipeline/core/scores.py: the one definition)
        "balanced_accuracy": _num(balanced_accuracy(y_true, y_pred, n_classes)),
        # over the classes present in y_true, like balanced accuracy: an absent class has no F1
        "macro_f1": _num(f1_score(y_true, y_pred, labels=sorted(set(y_true.tolist())), average="macro",
                                  zero_division=0)),
        "auc": _num(auc),
        **{k: _num(v) for k, v in calibration(y_true, prob).items() if k in ("brier", "ece")},
        "per_class": {
            name: {"sensitivity": _num(sensitivity[c]), "specificity": _num(specificity[c]),
                   "auc": _num(per_class_auc[c]), "support": int(positives[c])}
            for c, name in enumerate(class_names)
        },
        "confusion_matrix": cm.astype(int).tolist(),
        # what a constant guess of the most frequent true class would score (the accuracy floor)
        "majority_rate": _num(positives.max() / total),
        # the share of the test images given the most often predicted class (1.0: a constant predictor)
        "top_predicted_share": _num(cm.sum(axis=0).max() / total),
    }


def calibration(y_true: Sequence[int], prob: Any, n_bins: int = 10) -> dict:
    """Brier score (binary: of the second class's probability; otherwise the multi-class form, the
    mean over images of the summed squared error of every class's probability), expected calibration
    error over `n_bins` equal-width bins and the reliability curve, both of one quantity: for two
    classes, the positive (second) class's probability against its observed frequency (every bin can be
    used); for more, each class's probability against that class's frequency, the ECE being the mean
    over classes of each class's ECE (classwise ECE, Kull et al. 2019) and the curve pooling the classes.
    The reliability figure draws the same curve (pipeline/reporting/figures.py)."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(prob, dtype=np.float64)
    n_classes = p.shape[1]
    onehot = np.eye(n_classes)[y]
    brier = float(((p - onehot) ** 2).sum(axis=1).mean())
    if n_classes == 2:
        brier /= 2     # the binary form (scikit-learn's brier_score_loss of the positive class)
    edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    classes = [1] if n_classes == 2 else list(range(n_classes))

    def binned(event: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # the bins of calibration_curve(strategy="uniform"), so the ECE and the curve agree
        bins = np.searchsorted(edges, score)
        return (np.bincount(bins, minlength=n_bins), np.bincount(bins, weights=event, minlength=n_bins),
                np.bincount(bins, weights=score, minlength=n_bins))

    per_class = []
    for c in classes:
        counts, events, scores = binned(onehot[:, c], p[:, c])
        per_class.append(float(np.abs(events - scores).sum() / len(y)))
    counts, events, scores = binned(onehot[:, classes].ravel(), p[:, classes].ravel())
    used = counts > 0
    what = ("the positive class's probability" if n_classes == 2
            else "each class's probability (classwise ECE: the mean over classes)")
    return {"brier": brier, "ece": float(np.mean(per_class)), "ece_bins": f"{n_bins} equal-width bins of {what}",
            "reliability": {"mean_confidence": [float(x) for x in scores[used] / counts[used]],
                            "accuracy": [float(x) for x in events[used] / counts[used]]}}


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


def degenerate(balanced_accuracies: Sequence[float | None], top_predicted_shares: Sequence[float | None],
               n_classes: int) -> list[str]:
    """Why a model's folds show it did not learn (empty when it did): mean balanced accuracy at or
    below chance (1/n_classes) + DEGENERATE_MARGIN, or a fold predicting one class for at least
    DEGENERATE_ONE_CLASS_SHARE of its test images."""
    reasons = []
    bal = _finite(balanced_accuracies)
    chance = 1.0 / n_classes
    if len(bal) and bal.mean() <= chance + DEGENERATE_MARGIN:
        reasons.append(f"mean balanced accuracy {bal.mean():.3f} is at most chance {chance:.3f} + "
                       f"{DEGENERATE_MARGIN}")
    for k, share in enumerate(top_predicted_shares, start=1):
        if share is not None and share >= DEGENERATE_ONE_CLASS_SHARE:
            reasons.append(f"fold {k} predicts one class for {100 * share:.0f}% of its test images")
    return reasons


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (step-down; monotone, capped at 1); None stays None and is
    not counted in the family."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def _cluster_sums(values: np.ndarray, groups: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums of `values` and cluster sizes; each value its own cluster without `groups`."""
    if groups is None:
        return values.astype(np.float64), np.ones(len(values))
    groups = np.asarray(groups)
    if len(groups) != len(values):
        raise ValueError(f"{len(groups)} group labels for {len(values)} values")
    _, index = np.unique(groups.astype(str), return_inverse=True)
    return np.bincount(index, weights=values), np.bincount(index).astype(np.float64)


def _resampled_means(sums: np.ndarray, sizes: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means over `n_resamples` resamples of whole clusters with replacement (ratio of sums)."""
    n = len(sums)
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // n)  # bound memory at about 16 MB of indices per chunk
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    return out


def paired_bootstrap(correct_a: Sequence[bool], correct_b: Sequence[bool], groups: Sequence[Any] | None = None,
                     n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Paired bootstrap of the accuracy difference a - b: mean difference, percentile interval and
    two-sided p-value (share of resamples on the other side of 0, doubled).

    With `groups` (the patient of each image) whole patients are resampled, all of a patient's
    images together: images of one patient are correlated, and resampling them one by one would
    pretend there are as many independent observations as images (a cluster bootstrap; Field &
    Welsh 2007). Without `groups` every image is resampled alone.
    """
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired samples must be equal-length, non-empty 1-d; got {a.shape} and {b.shape}")
    sums, sizes = _cluster_sums(a - b, groups)
    boots = _resampled_means(sums, sizes, n_resamples, seed)
    alpha = (1 - confidence) / 2
    # (count + 1) / (B + 1): a resampling p-value is never exactly 0 (Davison & Hinkley 1997)
    tail = min(int((boots <= 0).sum()), int((boots >= 0).sum()))
    p = min(1.0, 2 * (tail + 1) / (n_resamples + 1))
    return {"mean_difference": float((a - b).mean()), "ci_low": float(np.quantile(boots, alpha)),
            "ci_high": float(np.quantile(boots, 1 - alpha)), "p_value": p, "n_images": len(a),
            "n_clusters": len(sums), "unit": "patient" if groups is not None else "image",
            "n_resamples": int(n_resamples)}


def cluster_bootstrap_ci(values: Sequence[float], groups: Sequence[Any], n_resamples: int = 2000, seed: int = 0,
                         confidence: float = 0.95) -> dict:
    """Percentile interval of a pooled mean (e.g. accuracy over every fold's test images), resampling
    whole patients: it does not assume the folds, or a patient's images, are independent."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"values must be non-empty 1-d; got shape {v.shape}")
    sums, sizes = _cluster_sums(v, groups)
    boots = _resampled_means(sums, sizes, n_resamples, seed)
    alpha = (1 - confidence) / 2
    return {"mean": float(v.mean()), "ci_low": float(np.quantile(boots, alpha)),
            "ci_high": float(np.quantile(boots, 1 - alpha)), "n_images": len(v), "n_patients": len(sums),
            "n_resamples": int(n_resamples)}
