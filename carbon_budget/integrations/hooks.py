"""What both callbacks do at their framework's hooks: open a budget or drive the one given, end each epoch, close
only what they opened. One place, so the Lightning and transformers callbacks cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from carbon_budget.config import PARAMS_FILE
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.measure.training import TrainingBudget


class BudgetHooks:
    """What both callbacks do at the start of a fit, the end of an epoch and the end of a fit; they differ only in
    where their framework keeps the epoch count and the stop flag."""

    def __init__(
        self,
        budget: TrainingBudget | None,
        stage: str | None,
        budget_kwh: float | None,
        params_file: Path | None,
    ) -> None:
        options = {"stage": stage, "budget_kwh": budget_kwh, "params_file": params_file}
        if budget is not None and any(value is not None for value in options.values()):
            given = ", ".join(f"{name}=" for name, value in options.items() if value is not None)
            raise CarbonBudgetError(
                f"CarbonBudgetCallback: {given} configures the budget the callback opens itself; with budget= the"
                " TrainingBudget you pass is configured already: pass one or the other"
            )
        self._stage, self._budget_kwh, self._params_file = stage, budget_kwh, params_file or Path(PARAMS_FILE)
        self._given = budget
        self.budget = budget  # the callback's own only from the start of a fit to its end

    def begin(self, epochs: int, framework_setting: str) -> None:
        """The fit is starting and will run `epochs` epochs (the framework's `framework_setting`)."""
        if self._given is None:
            self.budget = TrainingBudget(
                epochs, self._stage, budget_kwh=self._budget_kwh, params_file=self._params_file
            )
            self.budget.start()
        elif self._given.epochs != epochs:
            raise CarbonBudgetError(
                f"TrainingBudget(epochs={self._given.epochs}) but {framework_setting}={epochs}: the forecast"
                " extrapolates to the budget's epochs, so give both the same number"
            )

    def end_epoch(self, epochs_done: int) -> bool:
        """True: stop training at the end of this epoch."""
        return self.budget is not None and self.budget.end_epoch(epochs_done)

    def end(self, error: BaseException | None = None) -> None:
        """The fit ended (with `error`): close the callback's own budget, once; a given one stays open."""
        if self._given is None:
            budget, self.budget = self.budget, None
            if budget is not None:
                budget.finish(error)
