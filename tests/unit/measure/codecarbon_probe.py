"""Measure ~1.5 s of busy CPU with the codecarbon adapter, in whichever interpreter runs this file, and print the
outcome as one JSON line. test_codecarbon_range.py (beside it) runs it under the lowest and the highest codecarbon the
project supports; the project comes from PYTHONPATH, so the same checkout is measured under both."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import time

from carbon_budget.config import CarbonParams
from carbon_budget.errors import MeasurementError
from carbon_budget.measure.energy import EnergyMeter

BUSY_CPU_S = 1.5


def main() -> None:
    meter = EnergyMeter(CarbonParams(), "probe")
    try:
        meter.start()
        end = time.process_time() + BUSY_CPU_S
        while time.process_time() < end:
            pass
        sample_kwh = meter.sample_kwh()
        reading = meter.stop()
    except MeasurementError as error:
        print(json.dumps({"status": "error", "error": str(error)}))
        return
    plan_cache = importlib.util.find_spec("codecarbon.core.hardware_cache") is not None
    outcome = {
        "status": "ok",
        "sample_kwh": sample_kwh,
        "reading": dataclasses.asdict(reading),
        "plan_cache": plan_cache,
    }
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
