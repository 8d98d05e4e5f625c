"""The report's comparisons and units, on plain data."""

from __future__ import annotations

from carbon_budget.gate.budgets import Verdict
from carbon_budget.report.compare import (
    Side,
    budget_changes,
    compare,
    energy,
    mass,
    params_changes,
    render_markdown,
    size,
)


def side(label: str, energy_kwh: float, epochs: int = 20, budget: float = 0.001) -> Side:
    record = {
        "energy_kwh": energy_kwh,
        "co2_kg": energy_kwh * 0.4,
        "duration_s": 2.0,
        "methods": {"cpu": "estimated:cpu_load_x_tdp", "gpu": "none", "ram": "estimated:ram_rule"},
    }
    return Side(
        label,
        {"train": {"epochs": epochs}, "budget": {"energy_kwh": budget, "min_accuracy": 0.9}},
        {"train": record},
        {"model_size_mb": 0.08, "parameters": 17226, "deploy": {"accuracy": 0.97}},
    )


def test_raised_energy_budget_is_a_loosening_and_raised_accuracy_floor_is_not() -> None:
    base = {"budget": {"energy_kwh": 0.002, "min_accuracy": 0.9, "co2_kg": 1.0}}
    now = {"budget": {"energy_kwh": 0.02, "min_accuracy": 0.95}}
    changes = {c["key"]: c for c in budget_changes(now, base)}
    assert changes["budget.energy_kwh"]["change"] == "raised" and changes["budget.energy_kwh"]["loosened"]
    assert changes["budget.min_accuracy"]["change"] == "raised" and not changes["budget.min_accuracy"]["loosened"]
    assert changes["budget.co2_kg"]["change"] == "removed" and changes["budget.co2_kg"]["loosened"]


def test_params_diff_leaves_budgets_to_their_own_section() -> None:
    changes = params_changes(
        {"train": {"epochs": 22}, "budget": {"energy_kwh": 1}}, {"train": {"epochs": 20}, "budget": {"energy_kwh": 2}}
    )
    assert changes == [{"key": "train.epochs", "base": 20, "current": 22}]


def test_readable_units() -> None:
    assert energy(2.5) == "2.5 kWh" and energy(0.0025) == "2.5 Wh" and energy(2.5e-5) == "25 mWh"
    assert mass(0.004) == "4 g" and mass(4e-6) == "4 mg"
    assert size(0.082) == "82 KB" and size(3.0) == "3 MB"


def test_compare_and_markdown() -> None:
    report = compare(side("now", 0.002, epochs=22, budget=0.01), side("main", 0.001), Verdict([]), "abc123")
    assert report["totals"]["energy_kwh"]["delta_pct"] == 100.0
    assert report["stages"][0]["energy_kwh"]["delta"] == 0.001
    markdown = render_markdown(report)
    assert "within budget" in markdown
    assert "budget.energy_kwh raised** 0.001 → 0.01 in this change" in markdown
    assert "| train.epochs | 20 | 22 |" in markdown
    assert "+1 Wh (+100.0%)" in markdown


def test_base_without_records_says_so() -> None:
    empty = Side("main", {}, {})
    report = compare(side("now", 0.002), empty, Verdict([], ["over"]), "abc")
    markdown = render_markdown(report)
    assert "over budget" in markdown and "has no emission records yet" in markdown
    assert report["totals"]["energy_kwh"]["delta"] is None


def test_a_project_without_a_model_gets_no_empty_model_rows() -> None:
    record = {"energy_kwh": 1e-5, "co2_kg": 4e-6, "duration_s": 1.0, "methods": {}}
    tracked = Side("work tree", {"budget": {"energy_kwh": 0.01}}, {"sort": record})
    markdown = render_markdown(compare(tracked, None, Verdict([])))
    assert "| energy |" in markdown and "| sort |" in markdown
    for label in ("model size", "parameters", "test accuracy", "accuracy per kWh"):
        assert f"| {label} |" not in markdown
