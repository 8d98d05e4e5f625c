"""Did distillation pay for its own energy? Plain arithmetic over the records and the deploy metrics.

The deploy metrics (metrics/export.json) name the deployed model, the stage that trained it (`trained_by`) and,
for a distilled student, its teacher as it would have shipped (`teacher`, with its own `trained_by`).

Distilling costs energy once (the distill stage); a smaller student then saves energy on every prediction.
The saving per prediction is the student's measured energy per prediction against its teacher's in the same
format: both predicted on the test split under the export stage's meter (`inference`), on this hardware.
Torch-free, for the gate.
"""

from __future__ import annotations

from typing import Any


def distillation_payback(records: dict[str, dict[str, Any]], export: dict[str, Any]) -> dict[str, Any] | None:
    """Teacher against deployed student, or None when the deployed model is the teacher."""
    student = export.get("model")
    teacher, deployed = export.get("teacher"), export.get("deploy")
    if not student or student == "teacher" or not isinstance(teacher, dict) or not isinstance(deployed, dict):
        return None
    distill = records.get(str(export.get("trained_by")), {})
    train = records.get(str(teacher.get("trained_by")), {})
    teacher_1k, student_1k = (
        (side.get("inference") or {}).get("energy_per_1k_predictions_kwh") for side in (teacher, deployed)
    )
    measured = isinstance(teacher_1k, int | float) and isinstance(student_1k, int | float)
    saved_kwh = (float(teacher_1k) - float(student_1k)) / 1000 if measured else None  # type: ignore[arg-type]
    distill_kwh = distill.get("energy_kwh")
    break_even = distill_kwh / saved_kwh if saved_kwh and saved_kwh > 0 and distill_kwh is not None else None
    return {
        "student": student,
        "teacher_train_kwh": train.get("energy_kwh"),
        "distill_kwh": distill_kwh,
        "teacher": {key: teacher.get(key) for key in ("size_mb", "parameters", "accuracy", "latency_ms_per_batch")},
        "student_model": {
            key: deployed.get(key) for key in ("size_mb", "parameters", "accuracy", "latency_ms_per_batch")
        },
        "saved_kwh_per_prediction": saved_kwh,
        "break_even_predictions": break_even,
        "method": "measured: teacher's energy per prediction minus the student's, under the export stage's meter",
    }


def describe(payback: dict[str, Any]) -> str:
    """One line for the gate's output and the PR report."""
    teacher, student = payback["teacher"], payback["student_model"]
    parts = [
        f"distillation: student {payback['student']} cost {_wh(payback['distill_kwh'])}"
        f" (teacher's training {_wh(payback['teacher_train_kwh'])})",
        f"{teacher['size_mb'] / student['size_mb']:.1f}x smaller" if student["size_mb"] else "",
        f"accuracy {(student['accuracy'] - teacher['accuracy']) * 100:+.1f} pt",
        f"{teacher['latency_ms_per_batch'] / student['latency_ms_per_batch']:.1f}x faster"
        if student["latency_ms_per_batch"]
        else "",
    ]
    predictions = payback["break_even_predictions"]
    parts.append(
        f"pays back its energy after ~{predictions:,.0f} predictions (measured per prediction)"
        if predictions is not None
        else "never pays back its energy in inference (the student is not faster here)"
    )
    return "; ".join(p for p in parts if p)


def _wh(kwh: float | None) -> str:
    return "unknown" if kwh is None else f"{kwh * 1000:.3g} Wh"
