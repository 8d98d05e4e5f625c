"""How well the training callbacks forecast, and what an abort saves: each framework's tiny model trains under
`carbon-budget`'s budget-aware training (plain PyTorch `TrainingBudget`, Lightning and transformers callbacks).

    python -m benchmarks.budget_callbacks [--epochs N] [--frameworks plain lightning transformers]

For each framework: one run under a generous budget (at least 30 s of training by default) gives the actual
energy and the first forecast after warm-up (its error, target within 10 %); one run whose budget is a fifth of
that cost shows how much energy the abort saved. Runs measure themselves (no wrapper), stage name `fit`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# the defaults a team gets (warm-up 1 epoch, first forecast after 2 s of training, then every second)
FORECAST = {"on_overrun": "abort"}
# epochs for at least 30 s of training here (a plain loop's epoch is ~0.07 s, Lightning's and transformers' ~0.28 s)
EPOCHS = {"plain": 500, "lightning": 250, "transformers": 250}

DATA = """
import torch
torch.manual_seed(0)
torch.set_num_threads(1)
x = torch.randn(8192, 64)  # about 0.1 s an epoch here
y = (x[:, 0] > 0).long()
"""


def _scripts(epochs: int) -> dict[str, str]:
    return {
        "plain": DATA
        + f"""
from carbon_budget.measure.training import TrainingBudget
model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
with TrainingBudget(epochs={epochs}) as budget:
    for epoch in range(1, {epochs} + 1):
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
    max_epochs={epochs}, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
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
    output_dir="hf-out", num_train_epochs={epochs}, per_device_train_batch_size=64, report_to="none",
    save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True,
)
Trainer(model=model, args=args, train_dataset=rows, callbacks=[CarbonBudgetCallback()]).train()
""",
    }


def training_script(framework: str, epochs: int) -> str:
    """A complete training script (no download: random data, a model built here) under the framework's budget."""
    return _scripts(epochs)[framework].lstrip("\n")


def train(framework: str, epochs: int, budget_kwh: float, folder: Path) -> dict:
    """Run one training in `folder` (its params.yaml sets the budget); returns its record and exit code."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text(training_script(framework, epochs))
    params = {"budget": {"energy_kwh": budget_kwh, "co2_kg": 1.0}, "forecast": FORECAST}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "DVC_STAGE": "fit", "PYTHONPATH": str(ROOT), "CODECARBON_LOG_LEVEL": "error"}
    done = subprocess.run([sys.executable, "train.py"], cwd=folder, env=env, capture_output=True, text=True)
    record = json.loads((folder / "metrics/emissions/fit.json").read_text())
    return {**record, "exit_code": done.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="the same for every framework (default: EPOCHS)")
    parser.add_argument("--frameworks", nargs="+", default=["plain", "lightning", "transformers"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for framework in args.frameworks:
            epochs = args.epochs or EPOCHS[framework]
            full = train(framework, epochs, 1.0, Path(scratch) / framework / "full")
            figures = full["extra_metrics"]
            error = (figures["forecast_energy_kwh"] - full["energy_kwh"]) / full["energy_kwh"] * 100
            tight = train(framework, epochs, full["energy_kwh"] / 5, Path(scratch) / framework / "tight")
            saved = (1 - tight["energy_kwh"] / full["energy_kwh"]) * 100
            print(
                f"{framework}: full run {full['duration_s']:.1f} s, {full['energy_kwh'] * 1000:.4f} Wh;"
                f" first forecast (after epoch {figures['forecast_after_epoch']:.0f}) error {error:+.1f} %"
            )
            print(
                f"{framework}: budget a fifth of that: {tight['status']} by {tight['tags'].get('stopped_by')}"
                f" after {tight['extra_metrics']['epochs_run']:.0f} of {epochs} epochs"
                f" (exit {tight['exit_code']}),"
                f" {tight['energy_kwh'] * 1000:.4f} Wh: the abort saved {saved:.0f} % of the full run's energy"
            )


if __name__ == "__main__":
    main()
