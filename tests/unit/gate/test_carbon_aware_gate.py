"""Carbon-aware timing as the gate, the report and MLflow show it: the saving of the wait an execution ran under,
and a cleaner window a CO2 budget exceeded now would have held in (carbon_budget/gate/shifting.py)."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carbon_budget import layout
from carbon_budget.gate.evidence import judge_file, verdict_document
from carbon_budget.gate.render import render
from carbon_budget.gate.shifting import cleaner_window, saving
from carbon_budget.intensity import wait as waiting
from carbon_budget.intensity.series import iso, parse_time, read_series
from carbon_budget.intensity.window import Window
from carbon_budget.records.record import EmissionRecord, save_record
from carbon_budget.report.run import ReportRequest, report
from tests.conftest import BIN, GRID, foreign_project, record, run

FIXTURE = GRID / "forecast.csv"
T = parse_time  # the fixture's times, as written


def _at(stage: str, energy_kwh: float, started: str, ended: str) -> EmissionRecord:
    return record(stage, energy_kwh).model_copy(update={"started_at": started, "ended_at": ended})


def _waited(root: Path, started: str, ended: str | None, exit_code: int | None) -> None:
    """What `carbon-budget wait` writes: it chose 13:00 on the fixture series (145 g/kWh against 400 at once)."""
    series = read_series(FIXTURE)
    window = Window(T("2026-12-01T13:00:00Z"), T("2026-12-01T15:00:00Z"), 145.0, 400.0, series.describe(), "cleanest")
    end = T(ended) if ended else None
    waiting.write_outcome(root, waiting.outcome(window, series, 3600 * 14, T(started), end, exit_code))


def test_the_cleanest_window_within_a_day_that_fits_the_budget_is_found() -> None:
    series = read_series(FIXTURE)
    now = T("2026-12-01T09:00:00Z")
    # 1 kWh over 2 h: 0.4 kg at 400 g/kWh now; at 13:00 the mean is 145 g/kWh, 0.145 kg
    found = cleaner_window(series, 1.0, timedelta(hours=2), 0.2, now)
    assert found is not None and found.as_dict()["start"] == "2026-12-01T13:00:00Z"
    assert found.as_dict()["mean_g_per_kwh"] == 145.0 and found.co2_kg == pytest.approx(0.145)
    assert "2026-12-01T13:00:00Z" in found.hint() and "0.145 kg <= 0.2 kg" in found.hint()
    assert cleaner_window(series, 1.0, timedelta(hours=2), 0.1, now) is None  # no window is that clean
    # 16:00 on: the next dip (06:00 the next day, 155 g/kWh) is within the day; 13:00 has gone
    later = cleaner_window(series, 1.0, timedelta(hours=2), 0.2, T("2026-12-01T16:00:00Z"))
    assert later is not None and later.as_dict()["start"] == "2026-12-02T06:00:00Z"
    # a series in the past, or one whose dip is more than a day away, gives none
    assert cleaner_window(series, 1.0, timedelta(hours=2), 0.2, T("2026-12-05T00:00:00Z")) is None
    assert cleaner_window(series, 1.0, timedelta(hours=2), 0.2, T("2026-11-29T00:00:00Z")) is None


def test_the_saving_counts_only_the_records_that_ran_inside_the_wait(tmp_path: Path) -> None:
    _waited(tmp_path, "2026-12-01T13:00:00Z", "2026-12-01T14:00:00Z", 0)
    outcome = waiting_outcome(tmp_path)
    records = {
        "train": _at("train", 0.5, "2026-12-01T13:00:05+00:00", "2026-12-01T14:00:00.400000+00:00"),
        "data": _at("data", 0.25, "2026-11-30T10:00:00+00:00", "2026-11-30T10:01:00+00:00"),  # cached
    }
    found = saving(outcome, records, T("2026-12-01T15:00:00Z"))
    assert found is not None
    assert found["stages"] == ["train"] and found["energy_kwh"] == 0.5
    assert found["saving_basis"] == "realised" and found["realised_g_per_kwh"] == 150.0
    assert found["saving_pct"] == 62.5 and found["saving_g"] == pytest.approx((400 - 150) * 0.5)
    assert found["predicted_g_per_kwh"] == 145.0 and found["now_g_per_kwh"] == 400.0
    # another execution's wait: none of the records ran inside it
    assert saving(outcome, {"data": records["data"]}, T("2026-12-01T15:00:00Z")) is None


def test_a_gate_run_by_the_waited_command_charges_the_predicted_intensity(tmp_path: Path) -> None:
    _waited(tmp_path, "2026-12-01T13:00:00Z", None, None)  # written as the command starts
    assert waiting_outcome(tmp_path)["status"] == "running"
    records = {"train": _at("train", 0.5, "2026-12-01T13:00:05+00:00", "2026-12-01T13:30:00+00:00")}
    found = saving(waiting_outcome(tmp_path), records, T("2026-12-01T13:30:01Z"))
    assert found is not None and found["saving_basis"] == "predicted"
    assert found["saving_pct"] == pytest.approx(63.75, abs=0.05)


def waiting_outcome(root: Path) -> dict[str, object]:
    return json.loads((root / layout.CARBON_AWARE_FILE).read_text())  # type: ignore[no-any-return]


def test_gate_json_and_the_table_carry_the_saving_of_the_wait(tmp_path: Path) -> None:
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 1\n  co2_kg: 1\n")
    sort = _at("sort", 0.001, "2026-12-01T13:00:01+00:00", "2026-12-01T13:20:00+00:00")
    save_record(root / "metrics/emissions/sort.json", sort)
    _waited(root, "2026-12-01T13:00:00Z", "2026-12-01T13:20:00Z", 0)
    verdict, evidence = judge_file(root / "params.yaml", root)
    document = json.loads(json.dumps(verdict_document(verdict, evidence)))
    carbon_aware = document["carbon_aware"]
    assert verdict.passed and carbon_aware["stages"] == ["sort"]
    assert carbon_aware["realised_g_per_kwh"] == 150.0 and carbon_aware["now_g_per_kwh"] == 400.0
    assert carbon_aware["saving_pct"] == 62.5 and carbon_aware["saving_g"] == pytest.approx(0.25)
    assert carbon_aware["signal"] == "average" and "fixture" in carbon_aware["source"]
    assert "carbon-aware: sort ran from 2026-12-01T13:00:00Z at 150.0 g/kWh (realised)" in render(verdict, evidence)
    # the report shows it for the head
    markdown = report(root, ReportRequest(root / "params.yaml"))
    assert "### Carbon-aware timing" in markdown and "| realised intensity | 150.0 g/kWh |" in markdown
    assert "| saving | 62.5 % |" in markdown and "| CO2-eq saved | 250 mg |" in markdown
    # a wait whose command ran none of the records: no saving is claimed
    _waited(root, "2026-12-02T13:00:00Z", "2026-12-02T14:00:00Z", 0)
    assert verdict_document(*judge_file(root / "params.yaml", root))["carbon_aware"] is None


def _future_series(root: Path, now: datetime) -> str:
    """A day of 400 g/kWh from the last hour, with a dip to 100 g/kWh three hours from now."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    rows = ["start_utc,duration_min,g_per_kwh,source,generated_at"]
    for step in range(-1, 30):
        g_per_kwh = 100.0 if step in (3, 4) else 400.0
        rows.append(f"{iso(hour + timedelta(hours=step))},60,{g_per_kwh},test,{iso(hour)}")
    (root / "future.csv").write_text("\n".join(rows) + "\n")
    return iso(hour + timedelta(hours=3))


def test_a_co2_budget_exceeded_now_names_a_cleaner_window_and_still_fails(tmp_path: Path) -> None:
    # 0.001 kWh charged at 400 g/kWh: 0.4 g now, 0.1 g in the dip; the budget is 0.2 g
    budget = "budget:\n  energy_kwh: 1\n  co2_kg: 0.0002\ncarbon:\n  intensity_series: future.csv\n"
    root = foreign_project(tmp_path, budget)
    dip = _future_series(root, datetime.now(UTC))
    result = run([str(BIN / "carbon-budget"), "gate"], root, check=False)
    assert result.returncode == 1
    assert "co2 (total): 0.0004 kg > budget 0.0002 kg" in result.stderr
    assert f"hint: co2 (total) would fit budget.co2_kg in a cleaner window within the next day: starting {dip}" in (
        result.stderr
    )
    assert f"hint: co2 (total) would fit budget.co2_kg in a cleaner window within the next day: starting {dip}" in (
        result.stdout
    )  # under the table too
    verdict, evidence = judge_file(root / "params.yaml", root)
    window = verdict_document(verdict, evidence)["cleaner_window"]
    assert window["start"] == dip and window["mean_g_per_kwh"] == 100.0 and window["co2_kg"] == pytest.approx(1e-4)
    markdown = report(root, ReportRequest(root / "params.yaml"))
    assert f"cleaner window within the next day: starting {dip}" in markdown


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_provider_that_is_down_gives_no_hint_and_no_other_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = "budget:\n  energy_kwh: 1\n  co2_kg: 0.0002\ncarbon:\n  intensity_series: ukgrid\n"
    root = foreign_project(tmp_path, budget)
    monkeypatch.setenv("UKGRID_API_URL", f"http://127.0.0.1:{_dead_port()}")
    verdict, evidence = judge_file(root / "params.yaml", root)
    assert not verdict.passed and verdict.advice == () and evidence.cleaner_window is None
    assert verdict.failures() == [f"co2 (total): 0.0004 kg > budget 0.0002 kg ({root / 'params.yaml'} budget.co2_kg)"]


def test_the_mlflow_parent_run_holds_the_carbon_aware_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from carbon_budget.config import gate_params, read_params_file
    from carbon_budget.publish.verdict import Publishing, decide

    (tmp_path / "project").mkdir()
    root = foreign_project(tmp_path / "project", "budget:\n  energy_kwh: 1\n  co2_kg: 1\n")
    sort = _at("sort", 0.001, "2026-12-01T13:00:01+00:00", "2026-12-01T13:20:00+00:00")
    save_record(root / "metrics/emissions/sort.json", sort)
    _waited(root, "2026-12-01T13:00:00Z", "2026-12-01T13:20:00Z", 0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("CARBON_BUDGET_WORKER", "off")
    monkeypatch.chdir(root)
    raw = read_params_file(root / "params.yaml")
    decision = decide(gate_params(raw, "params.yaml"), raw, root, "params.yaml", lambda d: None, Publishing({}))
    assert decision.published, decision.unpublished
    client = MlflowClient(tracking_uri=uri)
    (parent,) = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if "carbon_budget.execution_id" in r.data.tags
    ]
    metrics = parent.data.metrics
    assert metrics["carbon_aware.realised_g_per_kwh"] == 150.0 and metrics["carbon_aware.now_g_per_kwh"] == 400.0
    assert metrics["carbon_aware.predicted_g_per_kwh"] == 145.0 and metrics["carbon_aware.saving_pct"] == 62.5
    assert metrics["carbon_aware.saving_g"] == pytest.approx(0.25)
    assert parent.data.tags["carbon_budget.carbon_aware.signal"] == "average"
