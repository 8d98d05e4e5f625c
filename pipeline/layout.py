"""Where every output lives, relative to the project root.

dvc.yaml declares the same paths; tests/test_layout.py fails if the two drift apart. Units and kinds live in
the directory names: data/, models/, metrics/, plots/.
"""

from __future__ import annotations

import os
from pathlib import Path

PROCESSED_DATA = Path("data/processed/splits.npz")
DATA_META = Path("data/processed/meta.json")
# every trained model (the teacher and any distilled students) lives in one folder, which export depends on:
# DVC then orders export after whichever students params define, and after none when there are none.
TRAINED_DIR = Path("models/trained")
MODEL = TRAINED_DIR / "model.pt"
DISTILL_METRICS_DIR = Path("metrics/distill")
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


def distill_stage(name: str) -> str:
    """The DVC stage `foreach` makes of a student, which also names its record and MLflow run."""
    return f"distill@{name}"


def student_model(name: str) -> Path:
    return TRAINED_DIR / f"{name}.pt"


def trained_model(name: str) -> Path:
    """The file of 'teacher' or of a named student."""
    return MODEL if name == "teacher" else student_model(name)


def distill_metrics(name: str) -> Path:
    return DISTILL_METRICS_DIR / f"{name}.json"


def distill_curves(name: str) -> Path:
    return Path("plots") / f"distill_{name}.csv"


def store_root() -> Path:
    """Where the shared MLflow store and its artifacts live: the real repository.

    Stages write their outputs relative to the working directory, which DVC sets to the repo (or, for a
    queued experiment, to its copy under .dvc/tmp/exps/). DVC_ROOT always names the real repo, so every
    experiment lands in one store instead of one that is thrown away with the copy.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()
