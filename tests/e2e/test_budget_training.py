"""Budget-aware training in real `dvc repro` runs and on a caller's own stage run (how the reference pipeline's train
stage uses the plugin), and honest attribution when runs share the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from carbon_budget.config import ForecastParams
from carbon_budget.errors import ForecastOverrun
from carbon_budget.measure.stage import StageRun
from carbon_budget.measure.training import TrainingBudget
from carbon_budget.records.record import load_record
from tests.conftest import ROOT, edit_params, run

BUSY = """
import json, sys, time
from carbon_budget.config import CarbonParams
from carbon_budget.measure.energy import EnergyMeter
meter = EnergyMeter(CarbonParams(tracking_mode=sys.argv[1], measure_power_secs=5.0), "busy")
meter.start()
end = time.time() + 2.0
while time.time() < end:
    pass
reading = meter.stop()
print(json.dumps({"cpu": reading.cpu_energy_kwh, "mode": reading.tracking_mode}))
"""


def busy(mode: str, copies: int, env: dict[str, str]) -> list[float]:
    """CPU energy charged to each of `copies` processes that each keep one core busy for 2 s, side by side."""
    procs = [
        subprocess.Popen([sys.executable, "-c", BUSY, mode], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(copies)
    ]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1])["cpu"] for p in procs]


@pytest.mark.integration
@pytest.mark.serial
def test_parallel_runs_are_not_each_charged_the_whole_machine(tool_env: dict[str, str]) -> None:
    env = {**tool_env, "PYTHONPATH": str(ROOT)}
    alone = busy("process", 1, env)[0]
    side_by_side = busy("process", 2, env)
    machine = busy("machine", 2, env)
    for charged in side_by_side:
        assert 0 < charged <= alone * 1.35  # never more than when it ran alone: the other run is not its cost
    if (os.cpu_count() or 1) == 2:  # both cores busy: machine mode charges each run for both
        assert min(machine) > 1.4 * max(side_by_side)


@pytest.mark.integration
def test_abort_stops_training_early_and_says_why(project: Path, tool_env: dict[str, str]) -> None:
    edit_params(
        project,
        # An abort is decided on time (the forecast's windows), a run's length on epochs: at 400 epochs the abort
        # came after ~200 of them, at 61-64 % of the forecast (three runs on 4 December 2026), too close to the 60 %
        # below; at 1,000 it comes as early in time, with most of the run left to save (~25 % expected)
        train={"epochs": 1000},
        budget={"stages": {"train": {"energy_kwh": 1e-6}}},
        forecast={"on_overrun": "abort"},
    )
    failed = run(["dvc", "repro", "train"], project, tool_env, check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "forecast" in failed.stderr and "budget 1e-06 kWh" in failed.stderr
    assert "budget.stages.train.energy_kwh" in failed.stderr
    record = json.loads((project / "metrics/emissions/train.json").read_text())
    assert record["status"] == "aborted" and record["tags"]["stopped_by"] == "budget_forecast"
    assert 0 < record["energy_kwh"] < 0.6 * record["extra_metrics"]["forecast_energy_kwh"]
    assert record["extra_metrics"]["epochs_run"] < 500
    assert not (project / "models/trained/model.pt").exists()  # an aborted model is not passed on as trained


@pytest.mark.integration
@pytest.mark.serial
def test_warn_finishes_training_the_gate_decides_and_the_forecast_holds(
    project: Path, tool_env: dict[str, str]
) -> None:
    edit_params(
        project,
        train={"epochs": 300},
        budget={"stages": {"train": {"energy_kwh": 1e-6}}},
        forecast={"on_overrun": "warn"},
    )
    # measured without the background worker: this test is about the forecast, not about sharing the CPU
    failed = run(["dvc", "repro"], project, {**tool_env, "CARBON_BUDGET_WORKER": "off"}, check=False)
    assert failed.returncode != 0
    assert "continuing (forecast.on_overrun: warn)" in failed.stderr
    assert "budget.stages.train.energy_kwh" in failed.stderr and "failed to reproduce 'gate'" in failed.stderr
    record = json.loads((project / "metrics/emissions/train.json").read_text())
    assert record["status"] == "completed" and record["extra_metrics"]["epochs_run"] == 300
    assert record["extra_metrics"]["forecast_after_epoch"] < 150  # a forecast made early, not near the end
    error = (record["extra_metrics"]["forecast_energy_kwh"] - record["energy_kwh"]) / record["energy_kwh"]
    assert abs(error) < 0.15, f"forecast off by {error:.1%}"


def test_the_train_stage_leaves_the_overrun_decision_to_the_plugin() -> None:
    """The reference pipeline trains through `TrainingBudget`, as a team's loop does: no stage forecasts, reads
    the policy, or reads what the stages before it spent itself."""
    import ast

    def names(script: str) -> set[str]:
        tree = ast.parse((ROOT / "stages" / script).read_text(encoding="utf-8"))
        found = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        found |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        return found | {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}

    forecasting = {"carbon_budget.measure.forecast", "Forecaster", "on_overrun", "overrun_confirmed"}
    for script in (ROOT / "stages").glob("*.py"):
        assert not names(script.name) & forecasting, script.name
    assert "TrainingBudget" in names("train.py") and "load_record" not in names("train.py")


def test_a_budget_on_the_callers_stage_run_stops_it_and_leaves_its_outcome_on_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`TrainingBudget(run=...)` forecasts from the caller's meter, decides, and writes its figures and tags on the
    caller's record, which the caller's own block then ends as `aborted`; nothing is written twice."""
    import time

    monkeypatch.chdir(tmp_path)  # no params.yaml: everything the budget needs is given
    record_file = tmp_path / "train.json"
    forecast = ForecastParams(warmup_epochs=1, sample_every_s=0.05, min_window_s=0.2)
    stage_run = StageRun("train", record_file=record_file, forecasts=True)
    overrun = r"^train: forecast .*\(the budget_kwh argument; forecast.on_overrun: abort\)$"
    with (
        pytest.raises(ForecastOverrun, match=overrun),
        stage_run,
        TrainingBudget(200, run=stage_run, budget_kwh=1e-12, forecast=forecast) as budget,
    ):
        for epoch in range(1, 201):
            end = time.process_time() + 0.02  # an epoch's work
            while time.process_time() < end:
                pass
            if budget.end_epoch(epoch):
                break
    record = load_record(record_file)
    assert record.status == "aborted" and record.tags["stopped_by"] == "budget_forecast"
    assert record.tags["forecast_policy"] == "abort" and record.extra_metrics["training_budget_kwh"] == 1e-12
    assert 2 < record.extra_metrics["epochs_run"] < 200
    assert record.extra_metrics["forecast_energy_kwh"] > 1e-12
    assert record.extra_metrics["forecast_abort_above_kwh"] > 1e-12  # two forecasts in a row over: the rule's pair
    assert [path.name for path in tmp_path.iterdir()] == ["train.json"]  # the caller's record, and only it
