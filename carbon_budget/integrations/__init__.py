"""Callbacks that put a training loop of Lightning or Hugging Face transformers under its energy budget.

    from carbon_budget.integrations.lightning import CarbonBudgetCallback      # imports lightning
    from carbon_budget.integrations.transformers import CarbonBudgetCallback   # imports transformers

Each is a `TrainingBudget` behind its framework's hooks. With no `budget=` the callback opens its own for the fit
and closes it (writing the record) when the fit ends; with `budget=` it drives the one its caller opened, as
DVCLive's callbacks take `live=`, and leaves closing it to that caller.
"""
