"""Charging a stage's CO2 at the grid's intensity over the hours its energy was spent (`carbon.intensity_series`).

One reading of intensity at the start or the end would charge a run that crosses a change of intensity (the evening
peak, the sun going down) wholly at one side of it. So while the stage runs, a light thread reads the meter's
cumulative energy every `carbon.measure_power_secs`, and the record charges each interval between two readings at
the series' mean over that interval, weighted by the energy spent in it (`IntensitySeries.energy_weighted`).

A series is a convenience, never a dependency: the provider is asked in the background as the stage starts (its
answer is cached, so the record's own look-up at the end reads nothing again), and a series that cannot be had or
does not cover the run leaves the meter's own intensity (the country average, or `carbon.intensity_g_per_kwh`), with
the reason in the record's source. A stage never fails because of it, and waits at most the provider's budget.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carbon_budget.errors import IntensityUnavailable, MeasurementError
from carbon_budget.intensity.providers import load
from carbon_budget.intensity.series import IntensitySeries, iso
from carbon_budget.measure.reading import EnergyReading, Intensity


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


class GridIntensity:
    """The series named by `carbon.intensity_series` for one stage, and the energy samples it is weighted by.

    `start` begins a daemon thread that loads the series, then samples `sample_kwh` (the meter's cumulative energy)
    every `every_s`; `stop` ends it; `charge` turns a reading charged at `fallback` into one charged at the series."""

    def __init__(self, source: str, root: Path, fallback: Intensity, every_s: float) -> None:
        self.source = source
        self._root = root
        self._fallback = fallback
        self._every_s = every_s
        self._samples: list[tuple[float, float]] = []  # (epoch seconds, cumulative kWh), the first at (start, 0)
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._series: IntensitySeries | None = None
        self._failure = ""
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.intervals_charged: list[tuple[datetime, datetime, float]] = []  # the latest charge's (start, end, kWh)

    def start(self, started_at: float, sample_kwh: Callable[[], float]) -> None:
        """Sample from `started_at` (epoch seconds: when the stage's charged span began, with nothing spent)."""
        self._samples = [(started_at, 0.0)]
        self._thread = threading.Thread(
            target=self._run, args=(started_at, sample_kwh), name="carbon-budget-intensity", daemon=True
        )
        self._thread.start()

    def _run(self, started_at: float, sample_kwh: Callable[[], float]) -> None:
        try:
            # the hours to come, asked as the stage starts (a forecast never holds the past); a cached answer that
            # knows this moment is used as it is, so stages after `carbon-budget wait` ask nothing
            start = _utc(started_at)
            self._series = load(self.source, self._root, start, covering=(start, start))
        except IntensityUnavailable as exc:
            self._failure = exc.reason
        finally:
            self._loaded.set()
        while not self._stopped.wait(self._every_s):
            try:
                kwh = sample_kwh()
            except MeasurementError:
                continue  # the meter is stopping: the final reading closes the last interval
            with self._lock:
                self._samples.append((time.time(), kwh))

    def stop(self) -> None:
        """End the sampling; waits for a load still under way (a provider's whole budget at most)."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def intervals(self, ended_at: float, energy_kwh: float) -> list[tuple[datetime, datetime, float]]:
        """(start, end, kWh) between consecutive samples, the last ending at `ended_at` with `energy_kwh` spent."""
        with self._lock:
            points = [*self._samples, (max(ended_at, self._samples[-1][0]), energy_kwh)]
        return [(_utc(t0), _utc(t1), kwh1 - kwh0) for (t0, kwh0), (t1, kwh1) in itertools.pairwise(points)]

    def ahead_g_per_kwh(self, duration_s: float) -> float | None:
        """The series' mean over the next `duration_s` seconds, for a forecast of the CO2 still to come; None
        while it is loading, when it cannot be had, or when it does not cover all of that time."""
        if self._series is None:
            return None
        now = datetime.now(UTC)
        return self._series.mean_over(now, now + timedelta(seconds=max(duration_s, 0.0)))

    def charge(self, reading: EnergyReading, ended_at: float, final: bool) -> EnergyReading:
        """`reading` charged at the series, energy-weighted over the samples, or at the fallback saying why.

        `final`: the stage has ended, so the series is looked up again for exactly the hours it ran (the cache
        answers when it covers them); a checkpoint uses what the start loaded, and never waits."""
        if final:
            self.stop()
        intervals = self.intervals_charged = self.intervals(ended_at, reading.energy_kwh)
        series, why = self._series, self._failure
        start, end = intervals[0][0], intervals[-1][1]
        if final and series is not None and series.coverage(start, end) < 1.0:
            try:
                series = load(self.source, self._root, start, covering=(start, end))
            except IntensityUnavailable as exc:
                series, why = None, exc.reason
        if series is None:
            return self._fall_back(reading, why or "still loading")
        g_per_kwh, covered = series.energy_weighted(intervals)
        if g_per_kwh is None or not covered:
            return self._fall_back(
                reading,
                f"{self.source} does not cover the run: it ran {iso(start)} to {iso(end)}, the series holds"
                f" {iso(series.start)} to {iso(series.end)}",
            )
        source = f"{series.describe()}, energy-weighted over {len(intervals)} meter interval(s)"
        return _at(reading, g_per_kwh, source)

    def _fall_back(self, reading: EnergyReading, why: str) -> EnergyReading:
        return _at(reading, self._fallback.g_per_kwh, f"{self._fallback.source} (intensity_series {why})")


def _at(reading: EnergyReading, g_per_kwh: float, source: str) -> EnergyReading:
    """The reading charged at `g_per_kwh`: its CO2 stays exactly its energy x intensity."""
    return dataclasses.replace(
        reading,
        carbon_intensity_g_per_kwh=g_per_kwh,
        co2_kg=reading.energy_kwh * g_per_kwh / 1000,
        carbon_intensity_source=source,
    )
