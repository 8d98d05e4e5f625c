"""Energy per prediction is the meter's reading over the predictions made, never latency times a power."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from carbon_budget.errors import MeasurementError
from carbon_budget.measure.cpu import J_PER_KWH
from carbon_budget.measure.inference import measure_predictions
from carbon_budget.measure.reading import Intensity

BATCHES = [(np.zeros((3, 2)), 3), (np.zeros((2, 2)), 2)]


def test_the_figure_is_what_the_meter_counted_over_the_predictions() -> None:
    readings = iter([1.0, 1.5])  # the running meter's total (kWh) before and after the interval
    rows: list[int] = []

    def predict(inputs: Any) -> None:
        rows.append(len(inputs))
        time.sleep(0.002)  # a latency that must not enter the figure

    measured = measure_predictions(lambda: next(readings), predict, BATCHES, 0.02, "test meter")
    assert rows[0] == 3 and measured.predictions == sum(rows[1:])  # the warm-up batch is not counted
    assert measured.seconds >= 0.02
    assert measured.energy_kwh == 0.5
    assert measured.energy_per_prediction_j == pytest.approx(0.5 * J_PER_KWH / measured.predictions)
    figures = measured.as_dict(Intensity(400.0, "test grid", None))
    assert figures["energy_per_1k_predictions_kwh"] == pytest.approx(0.5 / measured.predictions * 1000)
    assert figures["co2_per_1k_predictions_g"] == pytest.approx(figures["energy_per_1k_predictions_kwh"] * 400)
    assert (figures["intensity_source"], figures["method"]) == ("test grid", "test meter")


def test_a_meter_that_counted_nothing_is_an_error_not_a_zero() -> None:
    with pytest.raises(MeasurementError, match=r"counted no energy over \d+ predictions"):
        measure_predictions(lambda: 2.0, lambda _: None, BATCHES, 0.01, "test meter")
    with pytest.raises(MeasurementError, match="no inputs"):
        measure_predictions(lambda: 2.0, lambda _: None, [], 0.01, "test meter")
