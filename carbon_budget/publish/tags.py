"""Every name the tool gives MLflow tags and metrics, in one place (as MLflow keeps its own in `mlflow_tags.py`).

The runs are written by `publish/runs.py` and read back by the report's history (`report/history.py`) and by a
replay that must find what is already logged: a name changed on one side only would silently find nothing.
"""

from __future__ import annotations

PREFIX = "carbon_budget."  # a record's own tags (`EmissionRecord.tags`) are logged under it

# identify what a run logs, so a replay never logs anything twice
TAG_EXECUTION = "carbon_budget.execution_id"  # on a parent run: the execution snapshot it publishes
TAG_RECORD = "carbon_budget.record_id"  # on a stage's run: the record it logs
TAG_STAGE = "carbon_budget.stage"
# what measured a stage's record (records.fingerprint.fingerprint_id): history compares only runs measured alike
TAG_FINGERPRINT = "carbon_budget.fingerprint"

# on a stage's run: how its record was measured
TAG_STATUS = "carbon_budget.status"
TAG_MEASUREMENT = "carbon_budget.measurement"  # on parent runs too: the execution's methods, summarised
TAG_METHOD = "carbon_budget.method."  # + cpu, gpu or ram
TAG_TRACKING_MODE = "carbon_budget.tracking_mode"
TAG_INTENSITY_SOURCE = "carbon_budget.intensity_source"
TAG_HARDWARE_CPU = "carbon_budget.hardware.cpu"
TAG_HARDWARE_GPU = "carbon_budget.hardware.gpu"

# on a parent run: the gate's answer
TAG_VERDICT = "carbon_budget.verdict"
TAG_CACHED_STAGES = "carbon_budget.cached_stages"
TAG_FAILURES = "carbon_budget.failures"
# on a parent run whose stages ran under `carbon-budget wait`: the forecast it chose on, and its signal; the figures
# are metrics `carbon_aware.now_g_per_kwh`, `carbon_aware.saving_g`, ... (metrics/gate.json's `carbon_aware`)
CARBON_AWARE_METRIC = "carbon_aware."
TAG_CARBON_AWARE_SOURCE = "carbon_budget.carbon_aware.source"
TAG_CARBON_AWARE_SIGNAL = "carbon_budget.carbon_aware.signal"

TAG_MODEL = "carbon_budget.model"
# TAG_MODEL's values: registered (when params name a model), or logged for inspection after a failed gate
MODEL_LOGGED, MODEL_NOT_REGISTERED = "logged", "logged, not registered: gate failed"

# the tool's own cost of an execution, as metrics of its parent run: `carbon_budget_itself.energy_kwh`, ...
ITSELF_METRIC = "carbon_budget_itself."

# MLflow's own tags, which the tool sets and reads
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_GIT_BRANCH = "git.branch"  # the branch history finds the base's executions by
