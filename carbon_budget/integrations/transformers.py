"""Hugging Face transformers: `Trainer(..., callbacks=[CarbonBudgetCallback()])` puts training under its budget.

With no arguments it reads params.yaml in the working directory (`budget:`, `forecast:`, `carbon:`) and takes the
stage name from `carbon-budget track` (or DVC_STAGE); see `carbon_budget.measure.training.TrainingBudget`. A
confirmed overrun sets `control.should_training_stop` at the end of the epoch; under `abort`, training then
raises ForecastOverrun, so the process exits non-zero and `dvc repro` fails with the record `aborted`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from carbon_budget.config import PARAMS_FILE
from carbon_budget.measure.training import TrainingBudget


class CarbonBudgetCallback(TrainerCallback):  # type: ignore[misc]
    def __init__(
        self, stage: str | None = None, budget_kwh: float | None = None, params_file: Path = Path(PARAMS_FILE)
    ) -> None:
        self._options: dict[str, Any] = {"stage": stage, "budget_kwh": budget_kwh, "params_file": params_file}
        self.budget: TrainingBudget | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.budget = TrainingBudget(math.ceil(args.num_train_epochs), **self._options)
        self.budget.start()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.budget is not None and self.budget.end_epoch(round(state.epoch or 0)):
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        budget, self.budget = self.budget, None
        if budget is not None:
            budget.finish()
