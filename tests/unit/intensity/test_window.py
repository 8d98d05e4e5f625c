"""The cleanest window: a sliding mean over the job's duration inside the horizon, respecting finish-by, and "start
now" with a reason whenever no window can be chosen; `carbon-budget window` prints it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from carbon_budget.cli import main
from carbon_budget.intensity.series import parse_time, read_series
from carbon_budget.intensity.window import best_window, parse_duration
from tests.conftest import GRID

NOW = parse_time("2026-12-01T00:00:00Z")
T = parse_time


def test_the_cleanest_two_hours_start_at_13_with_a_mean_of_145() -> None:
    window = best_window(read_series(GRID / "forecast.csv"), timedelta(hours=2), NOW)
    assert (window.start, window.end) == (T("2026-12-01T13:00:00Z"), T("2026-12-01T15:00:00Z"))
    assert (window.mean_g_per_kwh, window.now_g_per_kwh, window.saving_pct) == (145.0, 400.0, 63.7)
    assert window.saving_g(2.0) == pytest.approx(510.0)  # 2 kWh x (400 - 145) g/kWh


def test_finish_by_and_max_wait_bound_the_choice() -> None:
    series = read_series(GRID / "forecast.csv")
    by_noon = best_window(series, timedelta(hours=2), NOW, finish_by=T("2026-12-01T12:00:00Z"))
    assert (by_noon.start, by_noon.mean_g_per_kwh) == (T("2026-12-01T05:00:00Z"), 295.0)
    soon = best_window(series, timedelta(hours=2), NOW, latest_start=T("2026-12-01T05:30:00Z"))
    assert soon.start == T("2026-12-01T05:00:00Z")
    at_once = best_window(series, timedelta(hours=2), NOW, latest_start=NOW)
    assert (at_once.start, at_once.saving_pct) == (NOW, 0.0) and "starting now is the cleanest" in at_once.reason


def test_a_window_never_runs_past_the_horizon() -> None:
    series = read_series(GRID / "forecast.csv")
    # from 2026-12-02T05:00 a 5-hour job fits only windows ending by 2026-12-03T00:00
    window = best_window(series, timedelta(hours=5), T("2026-12-02T05:00:00Z"))
    assert window.end <= series.end and window.start == T("2026-12-02T05:00:00Z")  # ties go to the earlier start
    assert window.mean_g_per_kwh == pytest.approx((400 + 160 + 150 + 400 + 400) / 5)
    # a job longer than what is left of the horizon is not shifted at all
    long = best_window(series, timedelta(hours=20), T("2026-12-02T05:00:00Z"))
    assert long.start == T("2026-12-02T05:00:00Z") and "less than 20h from now" in long.reason


def test_a_spent_forecast_or_one_too_short_means_start_now_with_the_reason() -> None:
    series = read_series(GRID / "forecast.csv")
    later = T("2026-12-05T00:00:00Z")
    spent = best_window(series, timedelta(hours=2), later)
    assert spent.start == later and spent.mean_g_per_kwh is None
    assert spent.reason == "start now: the forecast ended at 2026-12-03T00:00:00Z, before now (2026-12-05T00:00:00Z)"
    tight = best_window(series, timedelta(hours=2), NOW, finish_by=T("2026-12-01T01:00:00Z"))
    assert tight.start == NOW and "finishing by 2026-12-01T01:00:00Z leaves less than 2h" in tight.reason
    assert tight.now_g_per_kwh == 400.0 and tight.saving_pct == 0.0


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200), ("90m", 5400), ("300s", 300), ("1h30m", 5400), ("0", 0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["2", "2x", "", "h", "-1h"])
def test_a_duration_without_its_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_window_json_gives_every_key_and_the_text_says_the_same() -> None:
    args = ["window", "--forecast", str(GRID / "ukgrid-fw48h.json"), "--duration", "2h", "--now", "2026-12-01T00:00Z"]
    result = CliRunner().invoke(main, [*args, "--json", "--energy-kwh", "2"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert {"start", "end", "mean_g_per_kwh", "now_g_per_kwh", "saving_pct", "source", "reason"} <= set(document)
    assert (document["start"], document["mean_g_per_kwh"], document["saving_g"]) == (
        "2026-12-01T13:00:00Z",
        145.0,
        510.0,
    )
    text = CliRunner().invoke(main, args).output
    assert "start:   2026-12-01T13:00:00Z (in 13h)" in text and "145.0 g/kWh" in text and "63.7 %" in text


def test_window_on_an_unusable_forecast_answers_start_now_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "f.json").write_text('{"nothing": 1}')
    args = [
        "window",
        "--forecast",
        str(tmp_path / "f.json"),
        "--duration",
        "2h",
        "--now",
        "2026-12-01T00:00Z",
        "--json",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert document["start"] == "2026-12-01T00:00:00Z" and "no known intensity format" in document["reason"]


def test_window_refuses_a_time_without_its_zone() -> None:
    args = ["window", "--forecast", "f.csv", "--duration", "2h", "--now", "2026-12-01T00:00"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "no time zone" in result.output


def test_without_a_duration_and_nothing_to_estimate_from_it_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no DVC project here
    result = CliRunner().invoke(main, ["window", "--forecast", str(GRID / "forecast.csv")])
    assert result.exit_code == 1 and "give --duration" in result.output


@pytest.mark.integration
def test_without_a_duration_it_estimates_from_the_records_of_the_stages_that_would_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from tests.conftest import BIN, run

    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # the dvc this venv installs
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    repo = tmp_path / "repo"
    repo.mkdir()
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    (repo / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: echo train > model.txt\n    outs: [model.txt]\n  evaluate:\n    cmd: echo done\n"
    )
    (repo / "metrics" / "emissions").mkdir(parents=True)
    (repo / "metrics" / "emissions" / "train.json").write_text(json.dumps({"duration_s": 5400, "energy_kwh": 2.0}))
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(
        main, ["window", "--forecast", str(GRID / "forecast.csv"), "--now", "2026-12-01T00:00Z"]
    )
    assert result.exit_code == 0, result.output
    assert "duration: 1h30m (estimated: the last recorded durations of train" in result.output
    assert "no record for evaluate" in result.output
    # 13:30-15:00: half an hour at 150, an hour at 140 g/kWh; 2 kWh x (400 - 143.3) g/kWh saved
    assert "start:   2026-12-01T13:30:00Z" in result.output and "143.3 g/kWh" in result.output
    assert "(513 g CO2 for 2 kWh)" in result.output
