"""Energy per prediction, measured: the deployed model run batch after batch under a stage's own meter.

Latency times a mean power guesses what a prediction costs; this reads it. The model predicts on real inputs
(the test split) for at least `min_seconds`, long enough for the meter to resolve it (its CPU figure is the
process's CPU-seconds, its RAM figure the GB-seconds held), and the energy the meter counted over exactly that
interval, divided by the predictions made, is the figure. It is as measured or estimated as the meter is, and
says so (`method`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from carbon_budget.errors import MeasurementError
from carbon_budget.measure.cpu import J_PER_KWH
from carbon_budget.measure.reading import Intensity


@dataclass(frozen=True)
class PredictionEnergy:
    """What `predictions` predictions cost over `seconds`, as the meter counted it."""

    predictions: int
    seconds: float
    energy_kwh: float
    method: str

    @property
    def energy_per_prediction_j(self) -> float:
        return self.energy_kwh * J_PER_KWH / self.predictions

    @property
    def energy_per_1k_predictions_kwh(self) -> float:
        return self.energy_kwh / self.predictions * 1000

    def as_dict(self, intensity: Intensity) -> dict[str, Any]:
        """The figures metrics/export.json keeps, units in their names; CO2 at the stage's own intensity, which
        is kept with its source (SCI's I for inference)."""
        return {
            "energy_per_prediction_j": self.energy_per_prediction_j,
            "energy_per_1k_predictions_kwh": self.energy_per_1k_predictions_kwh,
            "energy_per_1k_predictions_wh": self.energy_per_1k_predictions_kwh * 1000,
            "co2_per_1k_predictions_g": self.energy_per_1k_predictions_kwh * intensity.g_per_kwh,
            "carbon_intensity_g_per_kwh": intensity.g_per_kwh,
            "intensity_source": intensity.source,
            "measured_predictions": self.predictions,
            "measured_seconds": self.seconds,
            "measured_energy_kwh": self.energy_kwh,
            "method": self.method,
        }


def measure_predictions(
    energy_kwh_now: Callable[[], float],
    predict: Callable[[Any], Any],
    batches: Sequence[tuple[Any, int]],
    min_seconds: float,
    method: str,
) -> PredictionEnergy:
    """Run `predict` over `batches` ((inputs, rows) pairs) again and again for at least `min_seconds`, and read
    the energy `energy_kwh_now` (a running meter's total) counted meanwhile. The first batch runs once before the
    interval: one-time set-up is not a prediction's cost."""
    if not batches:
        raise MeasurementError("no inputs to measure predictions on")
    predict(batches[0][0])
    before = energy_kwh_now()
    started = time.perf_counter()
    predictions = 0
    while True:
        for inputs, rows in batches:
            predict(inputs)
            predictions += rows
        if time.perf_counter() - started >= min_seconds:
            break
    seconds = time.perf_counter() - started
    spent = energy_kwh_now() - before
    if spent <= 0:
        raise MeasurementError(
            f"the meter counted no energy over {predictions} predictions in {seconds:.2f} s: measure longer"
            " (export.inference_seconds)"
        )
    return PredictionEnergy(predictions, seconds, spent, method)
