"""Lightning: `Trainer(callbacks=[CarbonBudgetCallback()])` puts the fit under its energy budget.

With no arguments it reads params.yaml in the working directory (`budget:`, `forecast:`, `carbon:`) and takes the
stage name from `carbon-budget track` (or DVC_STAGE); see `carbon_budget.measure.training.TrainingBudget`. A
confirmed overrun sets `trainer.should_stop` (Lightning ends the fit after the epoch); under `abort` the fit then
raises ForecastOverrun, so the process exits non-zero and `dvc repro` fails with the record `aborted`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from carbon_budget.config import PARAMS_FILE
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.measure.training import TrainingBudget


class CarbonBudgetCallback(Callback):
    def __init__(
        self, stage: str | None = None, budget_kwh: float | None = None, params_file: Path = Path(PARAMS_FILE)
    ) -> None:
        self._options: dict[str, Any] = {"stage": stage, "budget_kwh": budget_kwh, "params_file": params_file}
        self.budget: TrainingBudget | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.max_epochs or trainer.max_epochs < 1:
            raise CarbonBudgetError("CarbonBudgetCallback needs Trainer(max_epochs=N) to forecast the whole fit")
        self.budget = TrainingBudget(trainer.max_epochs, **self._options)
        self.budget.start()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.budget is not None and self.budget.end_epoch(trainer.current_epoch + 1):
            trainer.should_stop = True

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        budget, self.budget = self.budget, None
        if budget is not None:
            budget.finish()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        budget, self.budget = self.budget, None  # None once on_fit_end has recorded the outcome
        if budget is not None:
            budget.finish(exception)
