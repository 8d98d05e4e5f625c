"""Budget-aware training inside a team's own training loop: plain PyTorch (`TrainingBudget`), Lightning and Hugging
Face `Trainer` callbacks, with the real libraries on tiny models built here (no download).

Each framework trains once under a generous budget (completes, record `completed` with its forecast and actual
energy) and once under a fifth of that run's energy (stops early, exits non-zero, record `aborted` by
`budget_forecast`, far less energy spent); then the Lightning script runs as a stage of a DVC project set up by
`carbon-budget init`, measured once by the `track` wrapper around it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from benchmarks.budget_callbacks import training_script
from tests.conftest import BIN, ROOT, run

pytestmark = pytest.mark.integration

# enough epochs to forecast after warm-up (a 1 s window, then two forecasts 0.5 s apart confirm an overrun)
EPOCHS = 160  # training outweighs start-up (imports, now charged too), so an early stop has most of a run to save
FORECAST = {"warmup_epochs": 1, "on_overrun": "abort", "sample_every_s": 0.5, "min_window_s": 1.0}


def project(tmp_path: Path, name: str, energy_kwh: float, on_overrun: str = "abort") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text(training_script(name, EPOCHS))
    forecast = {**FORECAST, "on_overrun": on_overrun}
    params = {"budget": {"energy_kwh": energy_kwh, "co2_kg": 1.0}, "forecast": forecast}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder


def train(folder: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = subprocess.run(
        [str(BIN / "python"), "train.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    record_file = folder / "metrics/emissions/fit.json"
    assert record_file.is_file(), f"no record\n{result.stdout}\n{result.stderr}"
    return result, json.loads(record_file.read_text())


@pytest.fixture
def fit_env(tool_env: dict[str, str]) -> dict[str, str]:
    """Run on its own (no wrapper): the stage name comes from DVC_STAGE, as under `dvc repro`."""
    return {**tool_env, "DVC_STAGE": "fit", "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("framework", ["plain", "lightning", "transformers"])
def test_generous_budget_completes_and_a_tight_one_stops_early(
    framework: str, tmp_path: Path, fit_env: dict[str, str]
) -> None:
    done, full = train(project(tmp_path, framework, 1.0), fit_env)
    assert done.returncode == 0, done.stderr
    assert full["status"] == "completed" and full["tags"]["stopped_by"] == "completed"
    assert full["extra_metrics"]["epochs_run"] == EPOCHS
    assert full["extra_metrics"]["forecast_energy_kwh"] > 0 and full["energy_kwh"] > 0

    tight = full["energy_kwh"] / 5
    stopped, aborted = train(project(tmp_path / "tight", framework, tight), fit_env)
    assert stopped.returncode != 0
    assert "ForecastOverrun" in stopped.stderr and "forecast.on_overrun: abort" in stopped.stderr
    assert aborted["status"] == "aborted" and aborted["tags"]["stopped_by"] == "budget_forecast"
    assert aborted["extra_metrics"]["epochs_run"] < EPOCHS
    assert aborted["extra_metrics"]["forecast_energy_kwh"] > tight
    assert aborted["energy_kwh"] < 0.6 * full["energy_kwh"], (aborted["energy_kwh"], full["energy_kwh"])


def test_warn_policy_warns_once_and_trains_on(tmp_path: Path, fit_env: dict[str, str]) -> None:
    done, record = train(project(tmp_path, "plain", 1e-9, on_overrun="warn"), fit_env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("warning: fit: forecast") == 1 and "forecast.on_overrun: warn" in done.stderr
    assert record["status"] == "completed" and record["extra_metrics"]["epochs_run"] == EPOCHS
    assert record["extra_metrics"]["forecast_energy_kwh"] > 1e-9  # on record for the gate, which fails it


def test_callback_in_a_stage_set_up_by_init_uses_the_wrappers_meter(tmp_path: Path, tool_env: dict[str, str]) -> None:
    folder = project(tmp_path, "lightning", 1.0)
    env = {**tool_env, "PYTHONPATH": str(ROOT)}
    run(["git", "init", "-q"], folder, env)
    run(["dvc", "init", "-q"], folder, env)
    run(["dvc", "config", "core.analytics", "false"], folder, env)
    (folder / "dvc.yaml").write_text(
        "stages:\n  fit:\n    cmd: python train.py\n    deps: [train.py]\n    params: [forecast]\n"
    )
    run(["carbon-budget", "init"], folder, env)
    run(["dvc", "repro"], folder, env)
    record = json.loads((folder / "metrics/emissions/fit.json").read_text())
    # one meter, one record: the wrapper's, carrying what the callback forecast
    assert record["status"] == "completed" and record["tags"]["command"].startswith("python train.py")
    assert record["extra_metrics"]["forecast_energy_kwh"] > 0 and record["extra_metrics"]["epochs_run"] == EPOCHS
    assert [p.name for p in (folder / "metrics/emissions").iterdir()] == ["fit.json"]

    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["budget"]["stages"] = {"fit": {"energy_kwh": record["energy_kwh"] / 5}}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    (folder / "train.py").write_text((folder / "train.py").read_text() + "\n# retrain\n")
    failed = subprocess.run(["dvc", "repro"], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert failed.returncode != 0
    aborted = json.loads((folder / "metrics/emissions/fit.json").read_text())
    assert aborted["status"] == "aborted" and aborted["tags"]["stopped_by"] == "budget_forecast"
    assert aborted["energy_kwh"] < 0.6 * record["energy_kwh"]
    assert "budget.stages.fit.energy_kwh" in failed.stdout + failed.stderr
