"""Measurement: the codecarbon adapter, CPU attribution, the energy forecast, a stage's lifetime (`StageRun`) and
budget-aware training for any training loop (`TrainingBudget`)."""
