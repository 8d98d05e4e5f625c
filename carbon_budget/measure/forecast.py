"""Forecast a training run's energy from its first epochs, and say when it will not fit its budget.

carbontracker extrapolates linearly after the first epoch and can only ask a person to stop. Here: epochs
up to `warmup_epochs` are left out of the rate (they carry one-time costs: imports, allocator warm-up); after
each later epoch the forecast is

    forecast = spent so far + energy per epoch x epochs still to run

where "spent so far" is everything the stage has cost since it started (so fixed costs are counted exactly,
not extrapolated), and the energy per epoch is the median over the latest windows (spans between two meter
readings) of each window's energy per epoch: one slow or noisy window (another process busy for a second) moves a
mean since warm-up, not a median. The first forecast comes after `min_window_s` of training, cut into
WINDOWS_BEFORE_FIRST windows. CO2 follows from the intensity the stage is charged; with a grid intensity series
(`carbon.intensity_series`), the energy still to come is charged at the series' mean over the time still to run
(the seconds per epoch, taken from the same windows, times the epochs left): a run heading into the evening peak
forecasts more CO2 than one heading into the night. Pure logic, no I/O.

Whether a run is over budget is decided on the forecast's floor: the same sum at the fastest of those windows'
rates. A host that slows down for a few seconds (another tenant, another process) raises the median for as long
as its slow windows are most of the latest ones, and a run whose forecasts rose that way, then sped up again,
was stopped although it would have fitted (one run in five of a benchmark here, at a budget 5 % above its actual
cost). Stopping a run that fits loses its model; one that overruns by a few per cent still fails at the gate.

What an overrun leads to is decided here too (`Forecaster.decide`), for every training loop alike (`TrainingBudget`,
its callbacks, the reference pipeline's train stage): under `abort`, stop once two forecasts in a row are over; under
`warn`, warn once and train on.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

WINDOWS_BEFORE_FIRST = 4  # the first forecast's median is over this many windows
WINDOWS_KEPT = 5  # later forecasts: the median of the latest windows, so the rate follows a run that changes pace
OverrunPolicy = Literal["abort", "warn"]  # params `forecast.on_overrun`
Decision = Literal["stop", "warn"]  # what `Forecaster.decide` asks of the training loop after an epoch


@dataclass(frozen=True)
class Forecast:
    epoch: int
    spent_kwh: float
    energy_kwh: float
    co2_kg: float
    budget_kwh: float | None
    floor_kwh: float  # the forecast at the fastest recent window's rate: what over_budget is decided on

    @property
    def over_budget(self) -> bool:
        return self.budget_kwh is not None and self.floor_kwh > self.budget_kwh

    def message(self) -> str:
        saved = self.energy_kwh - self.spent_kwh
        return (
            f"forecast {self.energy_kwh:.3g} kWh for the whole training run (at least {self.floor_kwh:.3g} at the"
            f" fastest recent pace) > budget {self.budget_kwh:.3g} kWh (after epoch {self.epoch},"
            f" {self.spent_kwh:.3g} kWh spent); stopping now saves ~{saved:.3g} kWh"
        )


class Forecaster:
    """Call `observe` at the end of every epoch with a way to read the stage's cumulative energy.

    Reading the meter costs a few milliseconds, a lot next to a 30 ms epoch, so it is read when it matters: at
    the end of warm-up, then every `min_window_s / WINDOWS_BEFORE_FIRST` seconds until the first forecast (after
    `min_window_s` of training: shorter windows would let the 10 ms granularity of the OS's CPU clock skew the
    rate), then at most every `sample_every_s` seconds. A window's rate needs only its two readings, so skipping
    epochs loses no accuracy.
    """

    def __init__(
        self,
        total_epochs: int,
        warmup_epochs: int,
        budget_kwh: float | None,
        intensity_g_per_kwh: float,
        sample_every_s: float = 1.0,
        min_window_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_overrun: OverrunPolicy = "abort",
        intensity_ahead: Callable[[float], float | None] | None = None,
    ):
        """`intensity_ahead(duration_s)`: the grid's mean intensity (g/kWh) over the next `duration_s` seconds,
        None where it is not known; the energy still to come is then charged at `intensity_g_per_kwh`."""
        self._total = total_epochs
        self._on_overrun = on_overrun
        self._warmup = warmup_epochs
        self._budget = budget_kwh
        self._kg_per_kwh = intensity_g_per_kwh / 1000
        self._intensity_ahead = intensity_ahead
        self._every = sample_every_s
        self._window = min_window_s
        self._clock = clock
        self._last_sample = -float("inf")
        self._warmup_at = 0.0
        self._last_reading: tuple[int, float] | None = None  # (epoch, kWh) of the latest reading; None in warm-up
        self._rates: deque[float] = deque(maxlen=WINDOWS_KEPT)  # kWh per epoch of each window
        self._paces: deque[float] = deque(maxlen=WINDOWS_KEPT)  # seconds per epoch of the same windows
        self._warned = False
        self.first: Forecast | None = None
        self.previous: Forecast | None = None
        self.latest: Forecast | None = None
        self.abort_above_kwh: float | None = None  # the highest pair of forecast floors in a row (see `figures`)

    def observe(self, epoch: int, read_kwh: Callable[[], float]) -> Forecast | None:
        """The forecast after `epoch`, or None while warming up or between samples."""
        if epoch < self._warmup:
            return None
        if self._last_reading is None:
            self._last_reading = (epoch, read_kwh())
            self._last_sample = self._warmup_at = self._clock()
            return None
        wait = self._window / WINDOWS_BEFORE_FIRST if self.first is None else self._every
        if self._clock() - self._last_sample < wait and epoch < self._total:
            return None
        sampled_at, self._last_sample = self._last_sample, self._clock()
        spent_kwh = read_kwh()
        before_epoch, before_kwh = self._last_reading
        self._rates.append((spent_kwh - before_kwh) / (epoch - before_epoch))
        self._paces.append((self._last_sample - sampled_at) / (epoch - before_epoch))
        self._last_reading = (epoch, spent_kwh)
        if self.first is None and self._clock() - self._warmup_at < self._window and epoch < self._total:
            return None  # still collecting the first forecast's windows
        left = self._total - epoch
        total = spent_kwh + statistics.median(self._rates) * left
        floor = spent_kwh + min(self._rates) * left
        forecast = Forecast(epoch, spent_kwh, total, self._co2_kg(spent_kwh, total, left), self._budget, floor)
        self.first = self.first or forecast
        self.previous, self.latest = self.latest, forecast
        if self.previous is not None:
            pair = min(self.previous.floor_kwh, forecast.floor_kwh)
            self.abort_above_kwh = max(pair, self.abort_above_kwh or pair)
        return forecast

    def _co2_kg(self, spent_kwh: float, total_kwh: float, epochs_left: int) -> float:
        """The whole run's CO2: what is spent at the stage's intensity, what is to come at the grid's intensity over
        the time still to run when the series knows it."""
        ahead = None
        if self._intensity_ahead is not None and epochs_left > 0:
            ahead = self._intensity_ahead(statistics.median(self._paces) * epochs_left)
        ahead_kg_per_kwh = self._kg_per_kwh if ahead is None else ahead / 1000
        return spent_kwh * self._kg_per_kwh + (total_kwh - spent_kwh) * ahead_kg_per_kwh

    def decide(self, epoch: int, read_kwh: Callable[[], float]) -> Decision | None:
        """Forecast after `epoch` (see `observe`) and say what the overrun policy asks of the loop: "stop" under
        `abort` once the overrun is confirmed (`overrun_confirmed`); "warn" under `warn` the first time a forecast
        is over, so a run prints one warning, not one per epoch; else None: train on."""
        forecast = self.observe(epoch, read_kwh)
        if forecast is None or not forecast.over_budget:
            return None
        if self._on_overrun == "abort":
            return "stop" if self.overrun_confirmed() else None
        first, self._warned = not self._warned, True
        return "warn" if first else None

    def figures(self) -> dict[str, float]:
        """What a record keeps of the forecasts. The first one, whose error against the stage's actual energy is
        the forecast's accuracy; and `forecast_abort_above_kwh`, the highest pair of forecast floors in a row: an abort
        needs two in a row over the budget, and forecasts do not depend on the budget, so this run would have
        stopped under any training budget below that figure and run to its end under any above it. A false
        positive (a budget above the actual cost that still aborts) can so be checked for any budget afterwards."""
        found: dict[str, float] = {}
        if self.first is not None:
            found.update(
                forecast_energy_kwh=self.first.energy_kwh,
                forecast_co2_kg=self.first.co2_kg,
                forecast_after_epoch=self.first.epoch,
            )
        if self.abort_above_kwh is not None:
            found["forecast_abort_above_kwh"] = self.abort_above_kwh
        return found

    def overrun_confirmed(self) -> bool:
        """Two forecasts in a row over budget. One window can be distorted by whatever else the machine did in
        that second (a test once saw a first forecast 2x too high while another process ran); stopping a run
        that would have fitted is worse than one more second of training."""
        return all(f is not None and f.over_budget for f in (self.previous, self.latest))


def training_budget_kwh(stage_budget_kwh: float | None, total_budget_kwh: float, spent_before_kwh: float) -> float:
    """What training may spend: its own budget when params set one, else what the total leaves after the stages
    that ran before it."""
    if stage_budget_kwh is not None:
        return stage_budget_kwh
    return total_budget_kwh - spent_before_kwh
