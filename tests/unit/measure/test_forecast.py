"""The forecast's arithmetic and its sampling schedule, with a fake clock and meter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from carbon_budget.layout import tracking_uri
from carbon_budget.measure import quiet
from carbon_budget.measure.forecast import Forecaster, OverrunPolicy, training_budget_kwh
from carbon_budget.measure.stage import StageRun


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(
    forecaster: Forecaster,
    clock: Clock,
    epochs: int,
    fixed_kwh: float,
    per_epoch_kwh: float,
    epoch_s: float,
    first_epoch_extra_kwh: float = 0.0,
) -> list[tuple[int, float]]:
    """Feed `epochs` epochs; the first carries extra one-time energy, as real first epochs do."""
    readings = []
    for epoch in range(1, epochs + 1):
        clock.now += epoch_s
        spent = fixed_kwh + first_epoch_extra_kwh + per_epoch_kwh * epoch

        def read(epoch: int = epoch, spent: float = spent) -> float:
            readings.append((epoch, spent))
            return spent

        forecaster.observe(epoch, read)
    return readings


def test_forecast_excludes_warmup_and_counts_fixed_costs_exactly() -> None:
    clock = Clock()
    forecaster = Forecaster(100, 1, budget_kwh=1.0, intensity_g_per_kwh=500.0, min_window_s=1.0, clock=clock)
    run(forecaster, clock, 100, fixed_kwh=0.5, per_epoch_kwh=0.01, epoch_s=0.125, first_epoch_extra_kwh=0.2)
    first = forecaster.first
    assert first is not None and first.epoch == 9  # one epoch of warm-up, then 1 s of training
    assert first.energy_kwh == pytest.approx(0.5 + 0.2 + 0.01 * 100)
    assert first.co2_kg == pytest.approx(first.energy_kwh * 0.5)
    assert first.over_budget
    assert "forecast 1.7 kWh" in first.message() and "budget 1 kWh" in first.message()


def test_the_co2_still_to_come_is_charged_at_the_series_over_the_time_still_to_run() -> None:
    """With a grid intensity series, the energy still to come is charged at the series' mean over the hours it will
    run (the seconds per epoch times the epochs left), what is spent at the stage's intensity."""
    clock = Clock()
    asked: list[float] = []

    def ahead(duration_s: float) -> float:
        asked.append(duration_s)
        return 100.0

    forecaster = Forecaster(
        100, 1, budget_kwh=None, intensity_g_per_kwh=500.0, min_window_s=1.0, clock=clock, intensity_ahead=ahead
    )
    run(forecaster, clock, 100, fixed_kwh=0.5, per_epoch_kwh=0.01, epoch_s=0.125, first_epoch_extra_kwh=0.2)
    first = forecaster.first
    assert first is not None and first.epoch == 9
    assert asked[0] == pytest.approx(0.125 * (100 - 9))  # the time the 91 epochs left will take
    assert first.co2_kg == pytest.approx(first.spent_kwh * 0.5 + (first.energy_kwh - first.spent_kwh) * 0.1)
    unknown = Forecaster(
        100, 1, None, 500.0, min_window_s=1.0, clock=(other := Clock()), intensity_ahead=lambda s: None
    )
    run(unknown, other, 100, fixed_kwh=0.5, per_epoch_kwh=0.01, epoch_s=0.125, first_epoch_extra_kwh=0.2)
    assert unknown.first is not None and unknown.first.co2_kg == pytest.approx(unknown.first.energy_kwh * 0.5)


def test_meter_is_read_sparingly() -> None:
    clock = Clock()
    forecaster = Forecaster(
        1000, 2, budget_kwh=None, intensity_g_per_kwh=100.0, sample_every_s=1.0, min_window_s=1.0, clock=clock
    )
    readings = run(forecaster, clock, 1000, fixed_kwh=0.0, per_epoch_kwh=0.001, epoch_s=0.01)
    # warm-up end, four windows to the first forecast after 1 s, then once a second, and the last epoch
    assert len(readings) <= 15
    assert readings[0][0] == 2
    assert forecaster.latest is not None and forecaster.latest.epoch == 1000
    assert not forecaster.latest.over_budget


def test_short_runs_forecast_at_their_last_epoch_only() -> None:
    clock = Clock()
    forecaster = Forecaster(5, 1, budget_kwh=1.0, intensity_g_per_kwh=100.0, clock=clock)
    run(forecaster, clock, 5, fixed_kwh=0.1, per_epoch_kwh=0.01, epoch_s=0.01)
    assert forecaster.first is not None and forecaster.first.epoch == 5


@pytest.mark.parametrize(("policy", "expected"), [("abort", [None, "stop", "stop"]), ("warn", ["warn", None, None])])
def test_the_policy_says_what_an_overrun_asks_of_the_loop(policy: OverrunPolicy, expected: list[str | None]) -> None:
    """Each forecast here is over budget: `abort` stops from the second in a row on, `warn` warns once and never
    stops; epochs without a forecast (warm-up, between samples) ask nothing."""
    clock = Clock()
    forecaster = Forecaster(
        1000, 1, budget_kwh=0.5, intensity_g_per_kwh=100.0, min_window_s=1.0, clock=clock, on_overrun=policy
    )
    decided = {}
    for epoch in range(1, 41):
        clock.now += 0.125

        def read(epoch: int = epoch) -> float:
            return 0.01 * epoch

        decision = forecaster.decide(epoch, read)
        if forecaster.latest is not None and forecaster.latest.epoch == epoch:
            decided[epoch] = decision
        else:
            assert decision is None
    assert list(decided.values())[:3] == expected


def test_training_budget() -> None:
    assert training_budget_kwh(0.2, 1.0, 0.3) == 0.2
    assert training_budget_kwh(None, 1.0, 0.25) == 0.75


def test_an_overrun_must_be_seen_twice_before_it_stops_a_run() -> None:
    clock = Clock()
    forecaster = Forecaster(1000, 1, budget_kwh=0.5, intensity_g_per_kwh=100.0, min_window_s=1.0, clock=clock)
    run(forecaster, clock, 12, fixed_kwh=0.0, per_epoch_kwh=0.01, epoch_s=0.125)  # first forecast: over
    assert forecaster.latest is not None and forecaster.latest.over_budget
    assert not forecaster.overrun_confirmed()
    run(forecaster, clock, 30, fixed_kwh=0.0, per_epoch_kwh=0.01, epoch_s=0.125)
    assert forecaster.overrun_confirmed()


def test_one_slow_window_does_not_move_the_rate() -> None:
    """A second in which another process slowed training (an epoch costing 3x) is one window among several: the
    median ignores it, where a mean since warm-up read it as a dearer run."""
    clock = Clock()
    forecaster = Forecaster(1000, 1, budget_kwh=None, intensity_g_per_kwh=100.0, min_window_s=2.0, clock=clock)
    spent = 0.0
    for epoch in range(1, 1001):
        clock.now += 0.05
        slow = 0.6 < clock.now <= 1.0  # a slow span inside one window: the worker warming up beside it, say
        spent += 0.003 if slow else 0.001
        forecaster.observe(epoch, lambda spent=spent: spent)
        if forecaster.first is not None:
            break
    first = forecaster.first
    assert first is not None
    exact = first.spent_kwh + 0.001 * (1000 - first.epoch)
    assert first.energy_kwh == pytest.approx(exact, rel=1e-9)


def test_a_forecasting_stage_keeps_background_work_waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a stage forecasts, `forecasts_running` is true (the worker waits before each warm-up step); a marker
    left by a process that is gone (killed) does not hold anyone up, and is cleared."""
    monkeypatch.setattr(quiet.tempfile, "gettempdir", lambda: str(tmp_path))
    assert not quiet.forecasts_running()
    with StageRun("train", record_file=tmp_path / "train.json", forecasts=True):
        assert quiet.forecasts_running()
        assert quiet.wait_for_quiet(0.3) >= 0.3
        # the marker names the store its gate will publish to: a worker for another store does not wait for it
        assert quiet.forecasts_running(tracking_uri()) and not quiet.forecasts_running("sqlite:////elsewhere.db")
        assert tracking_uri() not in "".join(p.read_text() for p in quiet._folder().iterdir())
    assert not quiet.forecasts_running() and quiet.wait_for_quiet(5.0) < 0.1
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = quiet._folder() / dead.stdout.strip()
    left.touch()
    assert not quiet.forecasts_running() and not left.exists()


def test_the_highest_pair_of_forecasts_says_which_budgets_abort() -> None:
    """`forecast_abort_above_kwh` replays the abort rule for any budget: a run aborts under a budget below it
    (two forecasts in a row over) and never under one above it, on the same noisy series of readings."""
    import random

    def series(budget: float | None) -> Forecaster:
        noise = random.Random(7)
        clock = Clock()
        forecaster = Forecaster(400, 1, budget_kwh=budget, intensity_g_per_kwh=100.0, min_window_s=1.0, clock=clock)
        spent = 0.0
        for epoch in range(1, 401):
            clock.now += 0.05
            spent += 0.001 * noise.uniform(0.5, 1.8)  # windows that read high and low
            forecaster.observe(epoch, lambda spent=spent: spent)
            if budget is not None and forecaster.overrun_confirmed():
                break
        return forecaster

    figures = series(None).figures()
    above = figures["forecast_abort_above_kwh"]
    assert figures["forecast_energy_kwh"] > 0 and figures["forecast_after_epoch"] >= 1
    assert series(above * 0.999).overrun_confirmed()
    assert not series(above * 1.001).overrun_confirmed()


def test_a_few_slow_seconds_do_not_abort_a_run_that_fits() -> None:
    """Three slow seconds in the middle of a ten-second run (the host busy elsewhere) make the median forecast
    overshoot many times in a row; the run fits its budget, and the floor the decision is made on lets it finish."""
    clock = Clock()
    actual = 0.001 * 700 + 0.003 * 300  # 700 epochs at the usual pace, 300 three times as dear
    budget = actual * 1.05
    forecaster = Forecaster(1000, 1, budget_kwh=budget, intensity_g_per_kwh=100.0, min_window_s=2.0, clock=clock)
    spent, median_stops, previous_over, stopped = 0.0, False, False, False
    for epoch in range(1, 1001):
        clock.now += 0.01
        spent += 0.003 if 4.0 < clock.now <= 7.0 else 0.001
        forecast = forecaster.observe(epoch, lambda spent=spent: spent)
        if forecast is not None:
            over = forecast.energy_kwh > budget
            median_stops, previous_over = median_stops or (over and previous_over), over
            stopped = stopped or forecaster.overrun_confirmed()
    assert spent == pytest.approx(actual)
    assert median_stops  # deciding on the median would have stopped this run
    assert not stopped and forecaster.abort_above_kwh is not None and forecaster.abort_above_kwh <= budget
