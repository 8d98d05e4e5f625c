"""Budget-aware training inside a team's own training loop: plain PyTorch (`TrainingBudget`), Lightning and Hugging
Face `Trainer` callbacks, with the real libraries on tiny models built here (no download).

Each framework trains once under a generous budget (completes, record `completed` with its forecast and actual
energy) and once under a fifth of that run's energy (stops early, exits non-zero, record `aborted` by
`budget_forecast`, far less energy spent); then the Lightning script runs as a stage of a DVC project set up by
`carbon-budget init`, measured once by the `track` wrapper around it. Each callback also drives a `TrainingBudget`
its script opened (`budget=`): it stops the fit for that budget and leaves writing the record to the script.
"""

from __future__ import annotations

import importlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from benchmarks.budget_callbacks import training_script
from carbon_budget import CarbonBudgetError, TrainingBudget
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


# The line each framework's script ends with: its fit, which the script given a budget runs inside that budget
FIT = {"lightning": "trainer.fit(", "transformers": "Trainer(model=model"}


def script_with_budget(framework: str, epochs: int, budget_epochs: int) -> str:
    """The framework's training script, its callback driving a TrainingBudget the script opens around the fit. After
    the fit, still inside the block, the script says whether a record exists yet: only leaving the block writes one."""
    script = training_script(framework, epochs)
    assert script.count("CarbonBudgetCallback()") == 1
    script = script.replace("CarbonBudgetCallback()", "CarbonBudgetCallback(budget=budget)")
    setup, fit = script.rstrip().rsplit("\n", 1)
    assert fit.startswith(FIT[framework]), fit
    opens = "from pathlib import Path\nfrom carbon_budget import TrainingBudget\n\n"
    opens += f"budget = TrainingBudget({budget_epochs})\n"
    says = "print('record after the fit:', Path('metrics/emissions/fit.json').exists())"
    return f"{opens}{setup}\nwith budget:\n    {fit}\n    {says}\n"


@pytest.mark.parametrize("framework", ["lightning", "transformers"])
def test_a_callback_drives_the_budget_its_script_opened(
    framework: str, tmp_path: Path, fit_env: dict[str, str]
) -> None:
    short = 3  # no forecast needed: the record shows the callback counted the epochs into the script's budget
    folder = project(tmp_path, framework, 1.0)
    (folder / "train.py").write_text(script_with_budget(framework, short, short))
    done, record = train(folder, fit_env)
    assert done.returncode == 0, done.stderr
    assert "record after the fit: False" in done.stdout  # the callback did not close what it did not open
    assert record["status"] == "completed" and record["extra_metrics"]["epochs_run"] == short

    folder = project(tmp_path / "tight", framework, 1e-9)
    (folder / "train.py").write_text(script_with_budget(framework, EPOCHS, EPOCHS))
    stopped, aborted = train(folder, fit_env)
    assert stopped.returncode != 0 and "ForecastOverrun" in stopped.stderr
    assert "record after the fit: False" in stopped.stdout  # the fit ended early; the block raised on leaving
    assert aborted["status"] == "aborted" and aborted["tags"]["stopped_by"] == "budget_forecast"
    assert aborted["extra_metrics"]["epochs_run"] < EPOCHS


def test_a_given_budget_must_cover_the_fits_epochs(tmp_path: Path, fit_env: dict[str, str]) -> None:
    folder = project(tmp_path, "lightning", 1.0)
    (folder / "train.py").write_text(script_with_budget("lightning", 3, 4))
    done = subprocess.run(
        [str(BIN / "python"), "train.py"], cwd=folder, env=fit_env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode != 0
    assert "TrainingBudget(epochs=4) but Trainer(max_epochs)=3" in done.stderr, done.stderr


@pytest.mark.parametrize("framework", ["lightning", "transformers"])
def test_a_given_budget_is_configured_already(framework: str, tmp_path: Path) -> None:
    callbacks = importlib.import_module(f"carbon_budget.integrations.{framework}")
    budget = TrainingBudget(3, "fit", params_file=tmp_path / "params.yaml")
    assert callbacks.CarbonBudgetCallback(budget=budget).budget is budget
    with pytest.raises(CarbonBudgetError, match="budget_kwh=, params_file="):
        callbacks.CarbonBudgetCallback(budget_kwh=1.0, params_file=tmp_path / "params.yaml", budget=budget)
