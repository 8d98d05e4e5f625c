"""Classification metrics from a confusion matrix.

These few lines of numpy stand in for sklearn.metrics because importing scikit-learn costs about 1.5 s here
(more than the evaluation itself); tests/pipeline/test_evaluation.py checks every figure against scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The share of rows whose highest logit is the label: what export, distillation and the benchmarks score."""
    return float((logits.argmax(1) == labels).mean())


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are actual classes, columns predicted ones (scikit-learn's convention)."""
    return np.bincount(actual * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_metrics(actual: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and the per-class report; a class never predicted has precision 0, as in sklearn."""
    matrix = confusion_matrix(actual, predicted, len(classes))
    true_positives = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted_count = matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_count > 0, true_positives / predicted_count, 0.0)
        recall = np.where(support > 0, true_positives / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "accuracy": float(true_positives.sum() / max(len(actual), 1)),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": matrix.tolist(),
    }
