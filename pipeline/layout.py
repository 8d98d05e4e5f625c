"""Where every output lives, relative to the project root.

dvc.yaml declares the same paths; tests/test_layout.py fails if the two drift apart. Units and kinds live in
the directory names: data/, models/, metrics/, plots/.
"""

from __future__ import annotations

import os
from pathlib import Path

PROCESSED_DATA = Path("data/processed/splits.npz")
DATA_META = Path("data/processed/meta.json")
MODEL = Path("models/model.pt")
EXPORT_DIR = Path("models/export")
RECORDS_DIR = Path("metrics/emissions")
TRAIN_METRICS = Path("metrics/train.json")
EVALUATE_METRICS = Path("metrics/evaluate.json")
PER_CLASS_REPORT = Path("metrics/per_class.json")
EXPORT_METRICS = Path("metrics/export.json")
GATE_METRICS = Path("metrics/gate.json")
TRAINING_CURVES = Path("plots/training.csv")
TRAINING_CURVES_PNG = Path("plots/training_curves.png")
CONFUSION = Path("plots/confusion.csv")
CONFUSION_PNG = Path("plots/confusion_matrix.png")
ENERGY_PNG = Path("plots/energy_per_stage.png")
ENERGY_PER_STAGE = Path("plots/energy_per_stage.csv")
EFFICIENCY = Path("plots/efficiency.csv")
EXPORT_FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx", "onnx_int8": "model.int8.onnx"}
MODEL_CARD = EXPORT_DIR / "README.md"
INPUT_EXAMPLE = EXPORT_DIR / "input_example.json"
STATE_DIR = Path(".carbon-budget")
OUTBOX_DIR = STATE_DIR / "outbox"


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
