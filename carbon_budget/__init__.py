"""carbon-budget: energy and carbon budgets for every model a team trains, in any DVC project.

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

Nothing heavy is imported here, so `carbon-budget gate` and `--help` stay fast, and torch is never needed.
"""

__version__ = "0.2.0"
