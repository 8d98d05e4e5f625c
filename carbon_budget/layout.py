"""Where the plugin reads and writes, relative to the project root: one record per stage, the gate's verdict,
the deployed model's figures, and the local state (outbox) that never goes into git.

A project names the same paths in its dvc.yaml (`carbon-budget init` writes them there); the reference pipeline's
own paths live in its own `pipeline/layout.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

RECORDS_DIR = Path("metrics/emissions")
GATE_METRICS = Path("metrics/gate.json")
# Every stage DVC makes of dvc.yaml, written on every `dvc repro` by the `carbon_stages` stage (always changed,
# a fraction of a second): the gate depends on it, so a stage added or removed reruns the gate. DVC refuses
# dvc.yaml itself as a dependency.
STAGES_STAGE = "carbon_stages"
STAGES_LIST = Path("metrics/stages.json")
STAGES_COMMAND = f"carbon-budget stages --output {STAGES_LIST.as_posix()}"
# What a project ships, as its export step states it: `deploy.path`, `deploy.md5`, `deploy.accuracy` (the
# artifact's own test accuracy), `deploy.parameters`, and `model`; read by the gate for `budget.model_size_mb` and
# `min_accuracy`, and checked against the file (md5) so a swapped artifact cannot pass.
DEPLOY_METRICS = Path("metrics/export.json")
ENERGY_PER_STAGE = Path("plots/energy_per_stage.csv")
EFFICIENCY = Path("plots/efficiency.csv")
ENERGY_PICTURE = Path("plots/energy_per_stage.svg")
STATE_DIR = Path(".carbon-budget")
OUTBOX_DIR = STATE_DIR / "outbox"
# The tool's own cost: what the background worker spent (warm-up, MLflow publishing, pictures, the model) for the
# latest execution it published on this machine, as a record; the next gate counts it (docs/records.md)
ITSELF = "carbon-budget itself"
ITSELF_RECORD = STATE_DIR / "itself.json"
# the own-cost record the last deciding gate counted (`null` when none), which every later reading counts too
ITSELF_COUNTED = STATE_DIR / "itself-counted.json"
# what `carbon-budget wait` predicted and what ran (docs/how-to/carbon-aware.md), rewritten by each wait: as the
# command starts (`status: running`) and when it ends; the gate shows the saving when its records ran inside it
CARBON_AWARE_FILE = STATE_DIR / "carbon-aware.json"


def record_path(stage: str) -> Path:
    """The emission record a stage writes: one JSON file per stage, tracked by DVC."""
    return RECORDS_DIR / f"{stage}.json"


def store_root() -> Path:
    """Where the shared MLflow store and its artifacts live: the real repository.

    Stages write their outputs relative to the working directory, which DVC sets to the repo (or, for a
    queued experiment, to its copy under .dvc/tmp/exps/). DVC_ROOT always names the real repo, so every
    experiment lands in one store instead of one that is thrown away with the copy.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set (a team server); else the embedded sqlite store at the repo root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(store_root() / 'mlflow.db').as_posix()}"
