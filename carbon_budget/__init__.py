"""carbon-budget: energy and carbon budgets for every model a team trains, in any DVC project.

The names a team's own code needs are here:

    from carbon_budget import TrainingBudget, ForecastOverrun

- `TrainingBudget`: any training loop under its energy budget (forecast after warm-up, stop at an epoch's end)
- `StageRun`, `stage_main`: a stage script that measures itself and writes its emission record
- `EmissionRecord`, `load_record`: the record a stage leaves in metrics/emissions/<stage>.json
- the errors the library raises, all under `CarbonBudgetError`

The training callbacks stay in `carbon_budget.integrations.lightning` and `carbon_budget.integrations.transformers`:
importing them imports their framework. Everything but the errors is imported on first use (PEP 562), so
`import carbon_budget` pulls in none of torch, mlflow, codecarbon or dvc, and `carbon-budget --help` stays fast.

Subpackages, each with one job, imports pointing down this list only:
- `carbon_budget.cli`, `carbon_budget.entry`: the `carbon-budget` command and a stage script's entry point
- `scaffold`: `carbon-budget init`, which adds tracking and a gate to an existing dvc.yaml
- `integrations`: training callbacks for Lightning and Hugging Face transformers
- `publish`: MLflow (outbox, background worker, sync, pictures, credential redaction)
- `report`: a revision's cost against its base, for pull requests
- `gate`: budgets (pure) and the evidence they are judged on (files only)
- `measure`: codecarbon adapter, CPU attribution, forecast, a stage's lifetime, budget-aware training
- `records`: the emission record, dvc.yaml and dvc.lock read-only views
- `config`, `layout`, `files`, `errors`: params sections, paths, atomic files, the error hierarchy
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The errors import nothing, and `except` clauses need them as they are
from carbon_budget.errors import (
    BudgetExceeded,
    CarbonBudgetError,
    CommandFailed,
    ForecastOverrun,
    MeasurementError,
    ParamsError,
    RecordError,
    StageAborted,
    StageInterrupted,
)

if TYPE_CHECKING:  # what type checkers and editors see; at run time `__getattr__` imports each on first use
    from carbon_budget.entry import stage_main
    from carbon_budget.measure.stage import StageRun
    from carbon_budget.measure.training import TrainingBudget
    from carbon_budget.records.record import EmissionRecord, load_record

__version__ = "0.3.0"

# name -> the module that defines it, imported when the name is first read
_LAZY = {
    "TrainingBudget": "carbon_budget.measure.training",
    "StageRun": "carbon_budget.measure.stage",
    "stage_main": "carbon_budget.entry",
    "EmissionRecord": "carbon_budget.records.record",
    "load_record": "carbon_budget.records.record",
}

__all__ = [
    "BudgetExceeded",
    "CarbonBudgetError",
    "CommandFailed",
    "EmissionRecord",
    "ForecastOverrun",
    "MeasurementError",
    "ParamsError",
    "RecordError",
    "StageAborted",
    "StageInterrupted",
    "StageRun",
    "TrainingBudget",
    "__version__",
    "load_record",
    "stage_main",
]

if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name is an error there, not `Any`

    def __getattr__(name: str) -> Any:
        if name not in _LAZY:
            # also how `from carbon_budget import layout` falls through to importing the submodule
            raise AttributeError(f"module 'carbon_budget' has no attribute {name!r}")
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later reads skip this function
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
