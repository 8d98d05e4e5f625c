"""Knowledge distillation: the loss, the params, the payback arithmetic, and a real `dvc repro` with a student."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch
import yaml

from carbon_budget.errors import ParamsError
from carbon_budget.gate.payback import distillation_payback
from pipeline.config import StudentParams, TrainParams, parse_params
from pipeline.distillation import distillation_loss, student_config, student_training
from pipeline.models import build_model
from tests.conftest import ROOT, edit_params, run

DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_params(**sections: dict) -> dict:
    raw = json.loads(json.dumps(DEFAULTS))
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def test_the_loss_is_the_label_loss_at_alpha_0_and_zero_for_a_perfect_copy_at_alpha_1() -> None:
    torch.manual_seed(0)
    config = {"arch": "mlp", "in_features": 8, "n_classes": 3, "hidden_sizes": [5], "channels": [], "dropout": 0.0}
    teacher = build_model(config, seed=1).eval()
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    logits = torch.randn(16, 3)
    labels_only = distillation_loss(teacher, temperature=4.0, alpha=0.0)(logits, x, y)
    assert torch.allclose(labels_only, torch.nn.functional.cross_entropy(logits, y))
    with torch.no_grad():
        copy = teacher(x)
    assert distillation_loss(teacher, temperature=4.0, alpha=1.0)(copy, x, y).item() == pytest.approx(0.0, abs=1e-6)
    # the soft term grows with disagreement, scaled by T^2 so alpha means the same at any temperature
    assert distillation_loss(teacher, temperature=2.0, alpha=1.0)(-copy, x, y).item() > 0.1


def test_a_student_is_a_small_mlp_with_its_own_epochs_and_the_teachers_other_settings() -> None:
    teacher = {"arch": "cnn", "in_features": 64, "n_classes": 10, "hidden_sizes": [128], "channels": [16]}
    config = student_config({**teacher, "dropout": 0.2, "image_shape": [1, 8, 8]}, StudentParams(hidden_sizes=[8]))
    assert config["arch"] == "mlp" and config["hidden_sizes"] == [8] and config["dropout"] == 0.0
    teacher_training = TrainParams(epochs=5, lr=0.01, batch_size=32)
    training = student_training(teacher_training, StudentParams(epochs=9, lr=None))
    assert (training.epochs, training.lr, training.batch_size) == (9, 0.01, 32)
    assert student_training(teacher_training, StudentParams()).lr == 0.003


def test_params_choose_which_model_is_deployed() -> None:
    assert parse_params(with_params()).deployed_model() == "teacher"
    one = with_params(distill={"students": {"small": {}}})
    assert parse_params(one).deployed_model() == "small"
    assert parse_params(one).distill.stage_names() == ["distill@small"]
    back = with_params(distill={"students": {"small": {}}}, export={**DEFAULTS["export"], "model": "teacher"})
    assert parse_params(back).deployed_model() == "teacher"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"distill": {"students": {"Small-1": {}}}}, "distill.students"),
        ({"distill": {"students": {"teacher": {}}}}, "reserved"),
        ({"distill": {"students": {"small": {"alpha": 1.5}}}}, "distill.students.small.alpha"),
        ({"distill": {"students": {"small": {"temperature": 0}}}}, "distill.students.small.temperature"),
        ({"distill": {"students": {"a": {}, "b": {}}}}, "export.model must name the model"),
        ({"export": {**DEFAULTS["export"], "model": "tiny"}}, "export.model 'tiny'"),
    ],
)
def test_bad_distillation_params_get_one_clear_message(sections: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_params(with_params(**sections))


def test_payback_is_distillation_energy_over_the_measured_energy_each_prediction_saves() -> None:
    """The saving is the teacher's measured energy per prediction minus the student's, not a latency times a
    power: a student that is faster per batch but costs as much per prediction saves nothing."""
    records = {"train": {"energy_kwh": 2e-5}, "distill@small": {"energy_kwh": 1e-5}}
    export = {
        "model": "small",
        "trained_by": "distill@small",
        "deploy": {
            "size_mb": 0.01,
            "parameters": 10,
            "accuracy": 0.9,
            "latency_ms_per_batch": 1.0,
            "inference": {"energy_per_1k_predictions_kwh": 1e-6},
        },
        "teacher": {
            "size_mb": 0.1,
            "parameters": 100,
            "accuracy": 0.95,
            "latency_ms_per_batch": 2.0,
            "trained_by": "train",
            "inference": {"energy_per_1k_predictions_kwh": 3e-6},
        },
    }
    payback = distillation_payback(records, export)
    assert payback is not None
    assert payback["distill_kwh"] == 1e-5 and payback["teacher_train_kwh"] == 2e-5  # found by `trained_by`
    assert payback["saved_kwh_per_prediction"] == pytest.approx(2e-9)  # (3e-6 - 1e-6) kWh per 1,000
    assert payback["break_even_predictions"] == pytest.approx(1e-5 / 2e-9)
    assert payback["method"].startswith("measured")
    as_costly = {**export, "deploy": {**export["deploy"], "inference": {"energy_per_1k_predictions_kwh": 3e-6}}}
    assert distillation_payback(records, as_costly)["break_even_predictions"] is None  # type: ignore[index]
    unmeasured = {**export, "teacher": {k: v for k, v in export["teacher"].items() if k != "inference"}}
    assert distillation_payback(records, unmeasured)["saved_kwh_per_prediction"] is None  # type: ignore[index]
    assert distillation_payback(records, {**export, "model": "teacher"}) is None


@pytest.mark.integration
def test_a_student_is_distilled_measured_deployed_and_gated(project: Path, tool_env: dict[str, str]) -> None:
    assert "distill" not in run(["dvc", "stage", "list"], project, tool_env).stdout  # no student: no stage
    # only a student fits this size budget (teacher ~70 KB of ONNX, student ~5 KB)
    edit_params(
        project,
        distill={"students": {"small": {"hidden_sizes": [16], "epochs": 10, "lr": 0.01}}},
        export={"formats": ["onnx"], "deploy": "onnx"},
        budget={"model_size_mb": 0.02},
    )
    # the gate publishes in its own process, so the runs are in the store when dvc repro returns
    passed = run(["dvc", "repro"], project, {**tool_env, "CARBON_BUDGET_WORKER": "off"})
    assert "Running stage 'distill@small'" in passed.stdout and "gate: PASSED" in passed.stdout
    assert "distillation: student small cost" in passed.stdout and "warning" not in passed.stderr
    with sqlite3.connect(project / "mlflow.db") as store:
        names = {row[0] for row in store.execute("select name from runs")}
        keys = {row[0] for row in store.execute("select distinct key from metrics")}
        logged_models = store.execute("select count(*) from logged_models").fetchone()[0]
    assert logged_models == 1  # the student, as ONNX (mlflow.onnx)
    assert "distill@small" in names and "distill_small.energy_wh" in keys  # MLflow refuses '@' in metric names

    record = json.loads((project / "metrics/emissions/distill@small.json").read_text())
    assert record["status"] == "completed" and record["energy_kwh"] > 0
    assert record["params"]["distill.students.small"]["hidden_sizes"] == [16]
    export = json.loads((project / "metrics/export.json").read_text())
    assert export["model"] == "small" and export["parameters"] < export["teacher"]["parameters"]
    # measured, not inferred from latency: each ran on the test split under the export stage's meter, and the
    # larger model costs more per prediction than its student on the same machine
    student, teacher_cost = export["deploy"]["inference"], export["teacher"]["inference"]
    assert (
        student["method"].startswith("measured under the export stage's meter") and student["measured_seconds"] >= 0.3
    )
    assert 0 < student["energy_per_prediction_j"] < teacher_cost["energy_per_prediction_j"], (student, teacher_cost)
    gate = json.loads((project / "metrics/gate.json").read_text())
    assert set(gate["stages"]) >= {"train", "distill@small", "export"}  # teacher and student cost, side by side
    assert gate["distillation"]["distill_kwh"] == record["energy_kwh"]
    assert gate["test_accuracy"] == export["deploy"]["accuracy"]  # the accuracy budget holds for what ships
    card = (project / "models/export/README.md").read_text()
    assert "student **small**" in card and "distill@small" in card and "per 1,000 predictions" in card
    report = run(["carbon-budget", "report"], project, tool_env).stdout
    assert "### Distillation" in report and "distill@small" in report

    # deploying the teacher instead fails the same size budget, without distilling again
    edit_params(project, export={"model": "teacher"})
    failed = run(["dvc", "repro"], project, tool_env, check=False)
    assert failed.returncode != 0 and "model size" in failed.stderr and "budget.model_size_mb" in failed.stderr
    assert "Running stage 'distill@small'" not in failed.stdout

    # the case: a student that misses the accuracy budget fails; removed from params, the student's
    # artifact must not stay deployed and pass as the teacher (export reruns: `distill` is among its params)
    edit_params(
        project,
        distill={"students": {"weak": {"hidden_sizes": [2], "epochs": 1, "lr": 0.0001}}},  # near chance
        export={"formats": ["onnx"], "deploy": "onnx", "model": None},
        budget={"model_size_mb": 1.0, "min_accuracy": 0.5},
    )
    weak = run(["dvc", "repro"], project, tool_env, check=False)
    assert weak.returncode != 0 and "budget.min_accuracy" in weak.stderr
    edit_params(project, distill={"students": {}})
    teacher = run(["dvc", "repro"], project, tool_env)
    assert "Running stage 'export'" in teacher.stdout and "gate: PASSED" in teacher.stdout
    shipped = json.loads((project / "metrics/export.json").read_text())
    assert shipped["model"] == "teacher" and shipped["deploy"]["accuracy"] >= 0.5
