"""carbon-budget-pipeline: energy and carbon budgets for every model a team trains.

Nothing heavy is imported here, so `carbon-budget gate` and `--help` stay fast.
"""

__version__ = "0.1.0"
