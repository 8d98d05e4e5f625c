"""The model card follows Hugging Face's model-card metadata, parsed by the real huggingface_hub (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from carbon_budget.config import BudgetParams, SciParams
from carbon_budget.gate.budgets import check
from carbon_budget.gate.footprint import footprint
from pipeline.modelcard import render, task_of
from tests.conftest import ROOT, record

ARTIFACTS = {
    "onnx_int8": {
        "path": "models/export/model.int8.onnx",
        "size_mb": 0.02,
        "accuracy": 0.9611,
        "accuracy_drop": 0.0,
        "latency_ms_per_batch": 0.1,
    }
}


def card(tmp_path: Path, task: str, dataset: dict[str, str], budget: BudgetParams) -> tuple[ModelCard, str]:
    records = {"train": record("train", 2e-5), "evaluate": record("evaluate", 1e-5)}
    verdict = check(budget, records, 0.02, ARTIFACTS["onnx_int8"]["accuracy"], [])
    text = render(records, ARTIFACTS, "onnx_int8", verdict, budget_note="", task=task, dataset=dataset)
    (tmp_path / "README.md").write_text(text)
    return ModelCard.load(tmp_path / "README.md"), text


def test_the_hub_library_parses_the_card_with_its_dataset_and_the_deployed_accuracy(tmp_path: Path) -> None:
    budget = BudgetParams(energy_kwh=1.0, co2_kg=1.0, model_size_mb=1.0, min_accuracy=0.95)
    parsed, text = card(tmp_path, task_of((8, 8)), {"name": "digits", "type": "digits"}, budget)
    result = parsed.data.eval_results[0]
    assert (result.task_type, result.dataset_type, result.dataset_name) == ("image-classification", "digits", "digits")
    assert result.metric_value == pytest.approx(0.9611)  # the deployed artifact's own, as the gate judges it
    assert parsed.data.co2_eq_emissions["emissions"] == pytest.approx((2e-5 + 1e-5) * 0.4 * 1000)
    assert "At export time: within budget so far" in text


def test_the_task_follows_the_data_and_an_over_budget_card_says_why(tmp_path: Path) -> None:
    budget = BudgetParams(energy_kwh=1.0, co2_kg=1.0, min_accuracy=0.99)
    parsed, text = card(tmp_path, task_of(None), {"name": "data/features.csv", "type": "csv"}, budget)
    assert parsed.data.eval_results[0].task_type == "tabular-classification"
    assert "At export time: over budget: test accuracy" in text


def test_the_card_shows_sci_term_by_term(tmp_path: Path) -> None:
    train = record("train", 2e-5, duration_s=3.0).model_copy(update={"ended_at": "2026-01-01T00:00:03+00:00"})
    evaluate = record("evaluate", 1e-5, duration_s=1.0).model_copy(
        update={"started_at": "2026-01-01T00:00:03+00:00", "ended_at": "2026-01-01T00:00:04+00:00"}
    )
    records = {"train": train, "evaluate": evaluate}  # one after the other: the machine held for 4 s
    inference = {"energy_per_1k_predictions_kwh": 2e-9, "co2_per_1k_predictions_g": 8e-7}
    inference |= {"measured_seconds": 2.0, "measured_predictions": 2_000_000, "intensity_source": "test grid"}
    measured = footprint({n: r.model_dump(mode="json") for n, r in records.items()}, inference, SciParams(), None)
    budget = BudgetParams(energy_kwh=1.0, co2_kg=1.0)
    verdict = check(budget, records, 0.02, 0.97, [], footprint=measured)
    text = render(records, ARTIFACTS, "onnx_int8", verdict, budget_note="", task="x", dataset={}, footprint=measured)
    assert "## Software Carbon Intensity (SCI)" in text
    life_s = 4 * 365.25 * 86400
    # one training run: E 3e-5 kWh x 400 g/kWh = 0.012 g; M = 1e6 g x 4 s / 4 years
    assert (
        f"| one training run | {0.012 + 1e6 * 4 / life_s:.4g} | 3e-05 | 400 | 0.012 | {1e6 * 4 / life_s:.4g} |" in text
    )
    assert f"| 1,000 predictions | {8e-7 + 1e6 * 0.001 / life_s:.4g} | 2e-09 | 400 |" in text
    assert "Cloud Carbon Footprint" in text


def test_a_missing_or_doubtful_record_before_export_makes_the_card_fail_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export judges the card's verdict on the records so far as the gate does: one missing (evaluate) or whose
    parts do not add up (train) is no pass."""
    from carbon_budget.records.record import save_record
    from pipeline.config import load_params
    from stages.export import records_so_far

    params = load_params(ROOT / "params.yaml")
    monkeypatch.chdir(tmp_path)
    save_record(Path("metrics/emissions/preprocess.json"), record("preprocess", 1e-6))
    save_record(Path("metrics/emissions/train.json"), record("train", 2e-5).model_copy(update={"energy_kwh": 1e-3}))
    records, problems = records_so_far(params)
    assert set(records) == {"preprocess", "train"}
    assert any("evaluate.json" in p for p in problems) and any("do not add up" in p for p in problems)
    verdict = check(params.budget, records, 0.02, 0.97, problems)
    text = render(records, ARTIFACTS, "onnx_int8", verdict, budget_note="", task="x", dataset={})
    assert "At export time: cannot be verified: " in text and "within budget" not in text
