"""The reference pipeline's own errors, beside the plugin's: each is a `CarbonBudgetError`, so a stage's entry
point turns it into one message and exit code 1 like any other."""

from carbon_budget.errors import CarbonBudgetError


class DataError(CarbonBudgetError):
    """The data set named in params cannot be used as it is."""


class ModelError(CarbonBudgetError):
    """A model file is missing or cannot be loaded."""
