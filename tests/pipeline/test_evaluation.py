"""Our numpy metrics agree with scikit-learn's on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from pipeline.evaluation import classification_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    actual = rng.integers(0, 5, size=300)
    predicted = np.where(rng.random(300) < 0.7, actual, rng.integers(0, 5, size=300))
    predicted[predicted == 4] = 3  # class 4 is never predicted: precision 0, as sklearn's zero_division=0
    ours = classification_metrics(actual, predicted, [str(c) for c in range(5)])
    assert ours["accuracy"] == pytest.approx(metrics.accuracy_score(actual, predicted))
    assert ours["macro_f1"] == pytest.approx(metrics.f1_score(actual, predicted, average="macro", zero_division=0))
    assert ours["confusion_matrix"] == metrics.confusion_matrix(actual, predicted, labels=range(5)).tolist()
    report = metrics.classification_report(actual, predicted, output_dict=True, zero_division=0)
    for name, row in ours["per_class"].items():
        assert row["precision"] == pytest.approx(report[name]["precision"])
        assert row["recall"] == pytest.approx(report[name]["recall"])
        assert row["f1"] == pytest.approx(report[name]["f1-score"])
        assert row["support"] == report[name]["support"]
