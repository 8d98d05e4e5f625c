"""The model card: Hugging Face's format, with the carbon cost of the model in its front matter.

`co2_eq_emissions` follows the Hub's model-card metadata (emissions in grams, source, training_type,
geographical_location, hardware_used); the body adds what this pipeline knows: energy per stage, whether
each figure was measured or estimated, the artifacts, and how the figures stand against the budget.
"""

from __future__ import annotations

from typing import Any

import yaml

from carbon_budget.gate.budgets import Verdict
from carbon_budget.gate.footprint import Footprint, Sci
from carbon_budget.records.record import EmissionRecord


def task_of(image_shape: tuple[int, ...] | None) -> str:
    """The Hub's task type follows the data: images (digits are 8x8) or a table of features (a CSV or npz)."""
    return "image-classification" if image_shape else "tabular-classification"


def render(
    records: dict[str, EmissionRecord],
    artifacts: dict[str, dict[str, Any]],
    deploy: str,
    verdict: Verdict,
    *,
    budget_note: str,
    task: str,
    dataset: dict[str, str],
    model_name: str = "teacher",
    inference: dict[str, Any] | None = None,
    footprint: Footprint | None = None,
) -> str:
    """The card of the deployed artifact: its own test accuracy (what the gate judges), the cost of every stage
    before export, and the verdict at export time. `dataset` is the Hub's `{name, type}` of the data trained on."""
    test_accuracy = artifacts[deploy].get("accuracy")
    training = [r for r in records.values()]
    grams = sum(r.co2_kg for r in training) * 1000
    first = training[0] if training else None
    hardware = "unknown"
    if first is not None:
        hardware = first.hardware.cpu_model + (f" + {first.hardware.gpu_model}" if first.hardware.gpu_model else "")
    front: dict[str, Any] = {
        "library_name": "onnx" if deploy.startswith("onnx") else "pytorch",
        "tags": ["carbon-budget", "codecarbon"],
        "co2_eq_emissions": {
            "emissions": round(grams, 6),
            "source": "codecarbon",
            "training_type": "pre-training",
            "geographical_location": first.country_iso_code if first and first.country_iso_code else "unknown",
            "hardware_used": hardware,
        },
    }
    if test_accuracy is not None:
        front["model-index"] = [
            {
                "name": "carbon-budget-model",
                "results": [
                    {
                        "task": {"type": task},
                        "dataset": {**dataset, "split": "test"},
                        "metrics": [{"type": "accuracy", "value": round(test_accuracy, 4), "name": "test accuracy"}],
                    }
                ],
            }
        ]
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        "# Model card",
        "",
        f"Deployed artifact: **{deploy}** (`{artifacts[deploy]['path']}`).",
    ]
    if model_name != "teacher":
        lines.append(
            f"The model is the student **{model_name}**, distilled from the teacher trained by the train stage;"
            " the cost below includes both."
        )
    if test_accuracy is not None:
        lines.append(f"Test accuracy of the deployed artifact: **{test_accuracy:.2%}**.")
    lines += [
        "",
        "## Carbon cost",
        "",
        f"Producing this model emitted **{grams:.4g} g CO2-eq** (stages before export, codecarbon).",
        "",
        "| stage | energy (Wh) | CO2-eq (g) | duration (s) | how |",
        "|---|---:|---:|---:|---|",
    ]
    for name, record in records.items():
        lines.append(
            f"| {name} | {record.energy_kwh * 1000:.4g} | {record.co2_kg * 1000:.4g} |"
            f" {record.duration_s:.2f} | {record.methods.summary()} ({record.methods.cpu}) |"
        )
    lines += [
        "",
        "## Artifacts",
        "",
        "| format | size (KB) | accuracy | accuracy drop | latency per batch (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for fmt, check in artifacts.items():
        lines.append(
            f"| {fmt} | {check['size_mb'] * 1000:.1f} | {check['accuracy']:.2%} |"
            f" {check['accuracy_drop']:+.2%} | {check['latency_ms_per_batch']:.3f} |"
        )
    if inference is not None:
        lines += [
            "",
            "## Energy per prediction",
            "",
            f"Measured: **{inference['energy_per_1k_predictions_wh']:.4g} Wh and"
            f" {inference['co2_per_1k_predictions_g']:.4g} g CO2-eq per 1,000 predictions**"
            f" ({inference['energy_per_prediction_j']:.4g} J per prediction; {inference['measured_predictions']:,}"
            f" predictions in {inference['measured_seconds']:.2f} s, {inference['method']}).",
        ]
    scores = [score for score in (footprint.training, footprint.inference) if score] if footprint else []
    if scores:
        lines += _sci_section(scores)
    failed = "cannot be verified: " if verdict.problems else "over budget: "
    status = "within budget so far" if verdict.passed else failed + "; ".join(verdict.failures())
    lines += ["", "## Budget", "", f"At export time: {status}. {budget_note}", ""]
    return "\n".join(lines)


def _sci_section(scores: list[Sci]) -> list[str]:
    """Software Carbon Intensity, (E x I + M) per R, term by term with where each came from."""
    lines = [
        "",
        "## Software Carbon Intensity (SCI)",
        "",
        "SCI = (E x I + M) per R (Green Software Foundation, ISO/IEC 21031:2024): E energy, I the grid's"
        " location-based intensity, M the machine's embodied emissions for the time the work held it, R the"
        " functional unit. The training run covers the stages before export.",
        "",
        "| R (functional unit) | SCI (g CO2-eq) | E (kWh) | I (g/kWh) | E x I (g) | M (g) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for score in scores:
        lines.append(
            f"| {score.functional_unit} | {score.sci_g:.4g} | {score.energy_kwh:.4g} |"
            f" {score.intensity_g_per_kwh:.4g} | {score.operational_g:.4g} | {score.embodied_g:.4g} |"
        )
    first = scores[0].as_dict()["sources"]
    lines += [
        "",
        f"I: {first['intensity']}. M: {first['embodied']}.",
    ]
    return lines
