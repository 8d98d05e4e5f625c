"""Lightning: `Trainer(max_epochs=N, callbacks=[CarbonBudgetCallback()])` puts the fit under its energy budget.

With no arguments it reads params.yaml in the working directory (`budget:`, `forecast:`, `carbon:`) and takes the
stage name from `carbon-budget track` (or DVC_STAGE); see `carbon_budget.TrainingBudget`. A confirmed overrun sets
`trainer.should_stop` (Lightning ends the fit after the epoch); under `abort` the fit then raises ForecastOverrun,
so the process exits non-zero and `dvc repro` fails with the record `aborted`.

To measure more than the fit (evaluation, export) as the same stage, open the budget yourself and pass it:

    from carbon_budget import TrainingBudget

    with TrainingBudget(epochs=N) as budget:
        trainer = Trainer(max_epochs=N, callbacks=[CarbonBudgetCallback(budget=budget)])
        trainer.fit(model, data)
        trainer.test(model, data)
    # leaving the block writes the record, and raises ForecastOverrun if the fit stopped for its budget
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from carbon_budget.errors import CarbonBudgetError
from carbon_budget.integrations.hooks import BudgetHooks
from carbon_budget.measure.training import TrainingBudget


class CarbonBudgetCallback(Callback):
    def __init__(
        self,
        stage: str | None = None,
        budget_kwh: float | None = None,
        params_file: Path | None = None,
        *,
        budget: TrainingBudget | None = None,
    ) -> None:
        """`stage`, `budget_kwh`, `params_file` configure the TrainingBudget the callback opens for the fit (unset:
        from `carbon-budget track` or DVC_STAGE, and params.yaml); `budget`: drive this open one instead, whose
        epochs must be the Trainer's max_epochs, and leave closing it to the caller."""
        self._hooks = BudgetHooks(budget, stage, budget_kwh, params_file)

    @property
    def budget(self) -> TrainingBudget | None:
        """The budget being driven: the given one, or the callback's own while its fit runs."""
        return self._hooks.budget

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.max_epochs or trainer.max_epochs < 1:
            raise CarbonBudgetError("CarbonBudgetCallback needs Trainer(max_epochs=N) to forecast the whole fit")
        self._hooks.begin(trainer.max_epochs, "Trainer(max_epochs)")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._hooks.end_epoch(trainer.current_epoch + 1):
            trainer.should_stop = True

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._hooks.end()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._hooks.end(exception)  # nothing left to do once on_fit_end has recorded the outcome
