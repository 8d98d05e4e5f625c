"""The report's comparisons and units, on plain data."""

from __future__ import annotations

import pytest

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
from carbon_budget.report.noise import Noise, unlike
from carbon_budget.report.remeasure import _median_run, _spreads


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


def test_raising_any_ceiling_is_a_loosening_whatever_its_name() -> None:
    """Every budget but the accuracy floor is a ceiling: the per-prediction, lifetime and SCI ones too."""
    keys = ("inference_wh_per_1k", "inference_co2_g_per_1k", "lifetime_co2_kg", "sci_g_per_run")
    changes = budget_changes({"budget": dict.fromkeys(keys, 2.0)}, {"budget": dict.fromkeys(keys, 1.0)})
    assert [c["key"] for c in changes if c["loosened"]] == sorted(f"budget.{k}" for k in keys)
    lowered = budget_changes({"budget": dict.fromkeys(keys, 0.5)}, {"budget": dict.fromkeys(keys, 1.0)})
    assert not any(c["loosened"] for c in lowered)


def test_sci_against_base_from_each_sides_records_and_params() -> None:
    """The SCI rows compare each revision's own score: the base's records under the base's `sci` params."""
    now, base = side("now", 0.002), side("main", 0.001)
    now.params["sci"] = {"resource_share": 0.5}
    inference = {"energy_per_1k_predictions_kwh": 2e-6, "co2_per_1k_predictions_g": 8e-4}
    inference |= {"measured_seconds": 2.0, "measured_predictions": 1_000_000}
    now.export["deploy"]["inference"] = inference
    now.params["budget"]["sci_g_per_run"] = 5.0
    report = compare(now, base, Verdict([]), "abc123")
    life_s = 4 * 365.25 * 86400
    # E x I + M: 0.002 kWh x 400 g/kWh + 1,000,000 g x 2 s / 4 years x share
    assert report["totals"]["sci_g_per_run"]["current"] == pytest.approx(0.8 + 1e6 * 2 / life_s * 0.5)
    assert report["totals"]["sci_g_per_run"]["base"] == pytest.approx(0.4 + 1e6 * 2 / life_s)
    assert report["totals"]["sci_g_per_run"]["budget"] == 5.0
    assert report["totals"]["sci_g_per_1k_predictions"]["base"] is None  # the base measured no prediction
    assert report["sci"]["inference"]["sci_g"] == report["totals"]["sci_g_per_1k_predictions"]["current"]
    markdown = render_markdown(report)
    assert "| SCI per training run | 808 mg | 416 mg | +392 mg (+94.3%) |" in markdown and "| 5 g |" in markdown
    assert "- SCI (one training run): 0.8079 g CO2-eq = E 0.002 kWh x I 400 g/kWh" in markdown


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


def measured_side(
    label: str, energy_kwh: float, cpu_model: str = "Intel(R) Xeon(R) Processor", cpu_s: float = 5.0
) -> Side:
    """A side whose train record says what measured it, as records written today do."""
    plain = side(label, energy_kwh)
    record = {
        **plain.records["train"],
        "record_id": f"{label}-train",
        "pue": 1.0,
        "tracking_mode": "process",
        "hardware": {"cpu_model": cpu_model, "cpu_count": 2, "cpu_tdp_w": 8.0, "gpu_model": "", "gpu_count": 0},
        "extra_metrics": {"ram_w_per_gb": 0.392, "cpu_s": cpu_s},
    }
    return Side(label, plain.params, {"train": record}, plain.export)


def test_every_figure_carries_its_change_noise_and_significance() -> None:
    document = compare(measured_side("head", 1.05e-5), measured_side("base", 1e-5), Verdict([]))
    energy_total = document["totals"]["energy_kwh"]
    assert {"change_pct", "noise_pct", "significant"} <= set(energy_total)
    assert energy_total["change_pct"] == pytest.approx(5.0) and energy_total["noise_pct"] == 10.0
    assert energy_total["significant"] is False and energy_total["verdict"] == "no significant change"
    assert "default" in document["noise"]["source"]  # said to be a default, not a measurement
    train = document["stages"][0]
    assert train["energy_kwh"]["significant"] is False and train["cpu_s"]["change_pct"] == pytest.approx(0.0)
    assert "no significant change (±10.0 %)" in render_markdown(document)


def test_tripled_training_is_a_significant_regression() -> None:
    document = compare(measured_side("head", 3e-5, cpu_s=15.0), measured_side("base", 1e-5), Verdict([]))
    assert document["totals"]["energy_kwh"]["significant"] is True
    assert document["totals"]["energy_kwh"]["verdict"] == "regression"
    assert document["stages"][0]["cpu_s"]["verdict"] == "regression"
    assert "**regression**" in render_markdown(document)


def test_a_band_measured_wider_than_the_default_wins() -> None:
    noise = Noise("remeasured", 10.0, {"total.energy_kwh": 25.0})
    document = compare(measured_side("head", 1.2e-5), measured_side("base", 1e-5), Verdict([]), noise=noise)
    assert document["totals"]["energy_kwh"]["noise_pct"] == 25.0
    assert document["totals"]["energy_kwh"]["significant"] is False


def test_records_measured_differently_are_never_compared_for_energy() -> None:
    """Half the energy on another CPU is not an improvement: it says what differs, claims nothing; work is compared."""
    base = measured_side("base", 2e-5, cpu_model="Other Vendor CPU 9000")
    document = compare(measured_side("head", 1e-5), base, Verdict([]))
    for entry in (document["totals"]["energy_kwh"], document["totals"]["co2_kg"], document["stages"][0]["energy_kwh"]):
        assert entry["significant"] is False and entry["change_pct"] is None and entry["verdict"] == "not compared"
    assert "base measured on Other Vendor CPU 9000 x2 at 8 W" in document["stages"][0]["not_compared"]
    assert document["stages"][0]["cpu_s"]["verdict"] == "no significant change"  # work figures still compared
    assert "no regression is claimed" in render_markdown(document)
    assert unlike(base.records["train"], base.records["train"]) is None


def test_a_stage_dvc_did_not_rerun_is_marked() -> None:
    head, base = measured_side("head", 1e-5), measured_side("base", 1e-5)
    head.records["train"]["record_id"] = base.records["train"]["record_id"]
    document = compare(head, base, Verdict([]))
    assert document["stages"][0]["rerun"] is False
    assert "not rerun (the base's record)" in render_markdown(document)


def test_remeasured_sides_keep_a_median_run_whose_stages_add_up() -> None:
    runs = [{"train": {"energy_kwh": e, "co2_kg": e * 0.4, "duration_s": 1.0}} for e in (1.0, 1.2, 0.9)]
    assert _median_run(runs)["train"]["energy_kwh"] == 1.0
    assert _spreads(runs)["total.energy_kwh"] == pytest.approx(30.0)
