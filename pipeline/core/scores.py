"""The one balanced accuracy: the mean recall over the classes present in the labels.

Numpy only, so train (epoch selection on the validation part), deploy (ONNX parity of the exported
networks) and evaluate (metrics.fold_metrics) share one definition without train depending on
metrics.py: a metric added there reruns evaluate and report, never a train stage. It is scikit-learn's
`balanced_accuracy_score` (tests/test_metrics.py checks the two agree).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def balanced_accuracy(labels: Any, predicted: Any, n_classes: int | None = None) -> float:
    """Mean recall over the classes of 0..n_classes-1 that occur in `labels` (n_classes: the largest label
    + 1 when not given); 0.0 for no labels. Accepts numpy arrays, lists or (CPU or GPU) torch tensors."""
    labels, predicted = _array(labels), _array(predicted)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels have shape {labels.shape} but predictions {predicted.shape}; one prediction "
                         f"per label expected")
    if labels.size == 0:
        return 0.0
    n = int(labels.max()) + 1 if n_classes is None else n_classes
    recalls = [float(np.mean(predicted[labels == c] == c)) for c in range(n) if np.any(labels == c)]
    return float(np.mean(recalls)) if recalls else 0.0


def _array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):     # a torch tensor, wherever it lives
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.int64).ravel()
