"""Where every output of the reference pipeline lives, relative to the project root.

dvc.yaml declares the same paths; tests/pipeline/test_layout.py fails if the two drift apart. Units and kinds live in
the directory names: data/, models/, metrics/, plots/. The plugin's own paths (records, the gate's verdict,
the deployed model's figures) come from `carbon_budget.layout`.
"""

from __future__ import annotations

from pathlib import Path

from carbon_budget.layout import DEPLOY_METRICS
from carbon_budget.layout import EFFICIENCY as EFFICIENCY
from carbon_budget.layout import ENERGY_PER_STAGE as ENERGY_PER_STAGE
from carbon_budget.layout import ENERGY_PICTURE as ENERGY_PICTURE
from carbon_budget.layout import GATE_METRICS as GATE_METRICS

PROCESSED_DATA = Path("data/processed/splits.npz")
DATA_META = Path("data/processed/meta.json")
# every trained model (the teacher and any distilled students) lives in one folder, which export depends on:
# DVC then orders export after whichever students params define, and after none when there are none.
TRAINED_DIR = Path("models/trained")
MODEL = TRAINED_DIR / "model.pt"
DISTILL_METRICS_DIR = Path("metrics/distill")
EXPORT_DIR = Path("models/export")
TRAIN_METRICS = Path("metrics/train.json")
EVALUATE_METRICS = Path("metrics/evaluate.json")
PER_CLASS_REPORT = Path("metrics/per_class.json")
EXPORT_METRICS = DEPLOY_METRICS  # export states what ships where the gate reads it
TRAINING_CURVES = Path("plots/training.csv")
TRAINING_CURVES_PICTURE = Path("plots/training_curves.svg")
CONFUSION = Path("plots/confusion.csv")
CONFUSION_PICTURE = Path("plots/confusion_matrix.svg")
EXPORT_FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx", "onnx_int8": "model.int8.onnx"}
MODEL_CARD = EXPORT_DIR / "README.md"
INPUT_EXAMPLE = EXPORT_DIR / "input_example.json"


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
