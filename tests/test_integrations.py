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
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, ROOT, run

pytestmark = pytest.mark.integration

# enough epochs to forecast after warm-up (a 1 s window, then two forecasts 0.5 s apart confirm an overrun)
EPOCHS = 40
FORECAST = {"warmup_epochs": 1, "on_overrun": "abort", "sample_every_s": 0.5, "min_window_s": 1.0}

DATA = """
import torch
torch.manual_seed(0)
torch.set_num_threads(1)
x = torch.randn(8192, 64)  # about 0.1 s an epoch here: a few seconds of training
y = (x[:, 0] > 0).long()
"""

SCRIPTS = {
    "plain": DATA
    + f"""
from carbon_budget.measure.training import TrainingBudget
model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
with TrainingBudget(epochs={EPOCHS}) as budget:
    for epoch in range(1, {EPOCHS} + 1):
        for i in range(0, len(x), 64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            optimizer.step()
        if budget.end_epoch(epoch):
            break
""",
    "lightning": DATA
    + f"""
import lightning as L
from torch.utils.data import DataLoader, TensorDataset
from carbon_budget.integrations.lightning import CarbonBudgetCallback

class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 2))
    def training_step(self, batch, _):
        return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

trainer = L.Trainer(
    max_epochs={EPOCHS}, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
    enable_progress_bar=False, enable_model_summary=False, callbacks=[CarbonBudgetCallback()],
)
trainer.fit(Tiny(), DataLoader(TensorDataset(x, y), batch_size=64))
""",
    "transformers": DATA
    + f"""
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
from carbon_budget.integrations.transformers import CarbonBudgetCallback

config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=16)
model = BertForSequenceClassification(config)
ids = torch.randint(0, 64, (2048, 8))
rows = [{{"input_ids": ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": int(ids[i, 0] > 31)}}
        for i in range(len(ids))]
args = TrainingArguments(
    output_dir="hf-out", num_train_epochs={EPOCHS}, per_device_train_batch_size=64, report_to="none",
    save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True,
)
Trainer(model=model, args=args, train_dataset=rows, callbacks=[CarbonBudgetCallback()]).train()
""",
}


def project(tmp_path: Path, name: str, energy_kwh: float) -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text(textwrap.dedent(SCRIPTS[name]))
    params = {"budget": {"energy_kwh": energy_kwh, "co2_kg": 1.0}, "forecast": FORECAST}
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
