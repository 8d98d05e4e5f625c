"""Hugging Face transformers: `Trainer(..., callbacks=[CarbonBudgetCallback()])` puts training under its budget.

With no arguments it reads params.yaml in the working directory (`budget:`, `forecast:`, `carbon:`) and takes the
stage name from `carbon-budget track` (or DVC_STAGE); see `carbon_budget.TrainingBudget`. A confirmed overrun sets
`control.should_training_stop` at the end of the epoch; under `abort`, training then raises ForecastOverrun, so
the process exits non-zero and `dvc repro` fails with the record `aborted`.

To measure more than `train()` (evaluation, saving) as the same stage, open the budget yourself and pass it:

    from carbon_budget import TrainingBudget

    with TrainingBudget(epochs=N) as budget:
        trainer = Trainer(..., args=TrainingArguments(num_train_epochs=N, ...),
                          callbacks=[CarbonBudgetCallback(budget=budget)])
        trainer.train()
        trainer.evaluate()
    # leaving the block writes the record, and raises ForecastOverrun if training stopped for its budget
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from carbon_budget.integrations.hooks import BudgetHooks
from carbon_budget.measure.training import TrainingBudget


class CarbonBudgetCallback(TrainerCallback):  # type: ignore[misc]
    def __init__(
        self,
        stage: str | None = None,
        budget_kwh: float | None = None,
        params_file: Path | None = None,
        *,
        budget: TrainingBudget | None = None,
    ) -> None:
        """`stage`, `budget_kwh`, `params_file` configure the TrainingBudget the callback opens for training (unset:
        from `carbon-budget track` or DVC_STAGE, and params.yaml); `budget`: drive this open one instead, whose
        epochs must be TrainingArguments' num_train_epochs (rounded up), and leave closing it to the caller."""
        self._hooks = BudgetHooks(budget, stage, budget_kwh, params_file)

    @property
    def budget(self) -> TrainingBudget | None:
        """The budget being driven: the given one, or the callback's own while training runs."""
        return self._hooks.budget

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._hooks.begin(math.ceil(args.num_train_epochs), "TrainingArguments(num_train_epochs)")

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._hooks.end_epoch(round(state.epoch or 0)):
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._hooks.end()
