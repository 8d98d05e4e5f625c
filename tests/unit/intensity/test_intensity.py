"""Intensity series: every format a team meets reads to the same slots in g/kWh, told by content, and the means a
window or a record takes of them are time- and energy-weighted."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from carbon_budget.errors import CarbonBudgetError, IntensityUnavailable
from carbon_budget.intensity.series import LBS_PER_MWH_PER_G_PER_KWH, parse_series, parse_time, read_series
from tests.conftest import GRID

FORMATS = {
    "forecast.csv": ("canonical CSV", "average", 60),
    "electricitymaps-forecast.json": ("Electricity Maps v3 forecast", "average", 60),
    "ukgrid-fw48h.json": ("UK grid fw48h forecast", "average", 30),
    "watttime-forecast.json": ("WattTime v3 forecast (co2_moer, lbs_co2_per_mwh)", "marginal", 5),
    "carbon-aware-sdk-forecast.json": ("carbon-aware-sdk forecast", "unknown", 60),
}
T = parse_time


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_format_reads_to_the_same_48_hours_in_g_per_kwh(name: str) -> None:
    series = read_series(GRID / name)
    fmt, signal, slot_min = FORMATS[name]
    assert (series.format, series.signal) == (fmt, signal)
    assert (series.start, series.end) == (T("2026-12-01T00:00:00Z"), T("2026-12-03T00:00:00Z"))
    assert {slot.end - slot.start for slot in series.slots} == {timedelta(minutes=slot_min)}
    assert series.mean_over(T("2026-12-01T13:00:00Z"), T("2026-12-01T15:00:00Z")) == pytest.approx(145.0, abs=1e-3)
    assert series.at(T("2026-12-01T05:30:00Z")) == pytest.approx(300.0, abs=1e-3)
    assert name in series.describe() and f"{signal} intensity" in series.describe()


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_the_format_is_told_by_content_not_by_the_file_name(name: str, tmp_path: Path) -> None:
    shutil.copy(GRID / name, tmp_path / "forecast.txt")
    assert read_series(tmp_path / "forecast.txt").format == FORMATS[name][0]


def test_watttime_lbs_per_mwh_become_g_per_kwh() -> None:
    text = (
        '{"data": [{"point_time": "2026-12-01T00:00:00Z", "value": 1000.0}],'
        ' "meta": {"units": "lbs_co2_per_mwh", "signal_type": "co2_moer", "data_point_period_seconds": 300}}'
    )
    series = parse_series(text, "wt.json")
    assert series.slots[0].g_per_kwh == pytest.approx(1000.0 / LBS_PER_MWH_PER_G_PER_KWH)
    assert series.end - series.start == timedelta(minutes=5)


def test_a_file_in_no_known_format_or_without_data_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    for text in ("hello", '{"zone": "DE"}', '{"zone": "DE", "forecast": []}', "start_utc,duration_min\n"):
        (tmp_path / "f").write_text(text)
        with pytest.raises(IntensityUnavailable) as raised:
            read_series(tmp_path / "f")
        assert str(tmp_path / "f") in raised.value.reason
        assert isinstance(raised.value, CarbonBudgetError)
    with pytest.raises(IntensityUnavailable, match="cannot read"):
        read_series(tmp_path / "missing.csv")


def test_a_mean_over_hours_the_series_does_not_cover_is_none() -> None:
    series = read_series(GRID / "forecast.csv")
    assert series.mean_over(T("2026-12-02T23:00:00Z"), T("2026-12-03T01:00:00Z")) is None
    assert series.coverage(T("2026-12-02T23:00:00Z"), T("2026-12-03T01:00:00Z")) == pytest.approx(0.5)
    # a missing point leaves a gap rather than stretching its neighbour over it
    text = (
        '{"zone": "DE", "forecast": [{"carbonIntensity": 100, "datetime": "2026-12-01T00:00:00Z"},'
        ' {"carbonIntensity": 200, "datetime": "2026-12-01T01:00:00Z"},'
        ' {"carbonIntensity": 300, "datetime": "2026-12-01T03:00:00Z"}]}'
    )
    gappy = parse_series(text, "em.json")
    assert gappy.at(T("2026-12-01T02:30:00Z")) is None
    assert gappy.mean_over(T("2026-12-01T01:00:00Z"), T("2026-12-01T04:00:00Z")) is None
    assert gappy.mean_over(T("2026-12-01T00:30:00Z"), T("2026-12-01T01:30:00Z")) == pytest.approx(150.0)


def test_energy_weighted_intensity_follows_the_energy_across_a_change_mid_run() -> None:
    text = (
        "start_utc,duration_min,g_per_kwh,source,generated_at\n"
        "2026-12-01T11:00:00Z,60,400,test,2026-12-01T00:00:00Z\n"
        "2026-12-01T12:00:00Z,60,100,test,2026-12-01T00:00:00Z\n"
    )
    series = parse_series(text, "run.csv")
    # 1 kWh in the half hour before the change, 3 kWh in the half hour after: 175 g/kWh, where one reading at the
    # start would say 400 and a time-weighted mean 250
    intervals = [
        (T("2026-12-01T11:30:00Z"), T("2026-12-01T12:00:00Z"), 1.0),
        (T("2026-12-01T12:00:00Z"), T("2026-12-01T12:30:00Z"), 3.0),
    ]
    assert series.energy_weighted(intervals) == (pytest.approx(175.0), True)
    # one interval straddling the change is charged at its own time-weighted mean
    assert series.energy_weighted([(T("2026-12-01T11:30:00Z"), T("2026-12-01T12:30:00Z"), 2.0)]) == (
        pytest.approx(250.0),
        True,
    )
    beyond = [*intervals, (T("2026-12-01T12:30:00Z"), T("2026-12-01T13:30:00Z"), 1.0)]
    assert series.energy_weighted(beyond) == (pytest.approx(175.0), False)
    assert series.energy_weighted([(T("2020-01-01T00:00:00Z"), T("2020-01-01T01:00:00Z"), 1.0)]) == (None, False)


def test_a_marginal_csv_says_so_and_a_naive_time_is_refused() -> None:
    marginal = "start_utc,duration_min,g_per_kwh,source,generated_at\n2026-12-01T00:00:00Z,60,500,WattTime marginal,\n"
    assert parse_series(marginal, "m.csv").signal == "marginal"
    naive = "start_utc,duration_min,g_per_kwh,source,generated_at\n2026-12-01T00:00:00,60,500,x,\n"
    with pytest.raises(IntensityUnavailable, match=r"m\.csv:2: .*no time zone"):
        parse_series(naive, "m.csv")
