"""SCI (ISO/IEC 21031) and the lifetime footprint: the arithmetic against hand-computed cases, every new budget
failing the gate by name, and the params edge."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carbon_budget.config import BudgetParams, PredictionUsage, SciParams, gate_params
from carbon_budget.errors import ParamsError
from carbon_budget.gate.budgets import check
from carbon_budget.gate.evidence import judge_file, verdict_document
from carbon_budget.gate.footprint import Footprint, footprint
from carbon_budget.layout import ITSELF
from carbon_budget.records.record import EmissionRecord, NodeEnergy, with_nodes
from tests.conftest import foreign_project, record

# 4 years of 365.25 days, in seconds: 126,230,400
LIFE_S = 4 * 365.25 * 24 * 3600
# export's measurement: 1,000,000 predictions in 2 s, 2e-6 kWh and 0.0008 g CO2 per 1,000 (400 g/kWh)
INFERENCE = {
    "energy_per_1k_predictions_kwh": 2e-6,
    "co2_per_1k_predictions_g": 8e-4,
    "measured_seconds": 2.0,
    "measured_predictions": 1_000_000,
    "carbon_intensity_g_per_kwh": 400.0,
    "intensity_source": "test grid",
    "method": "measured under the export stage's meter (cpu estimated:cpu_time_x_tdp)",
}


def plain(records: dict[str, EmissionRecord]) -> dict[str, dict[str, Any]]:
    return {name: r.model_dump(mode="json") for name, r in records.items()}


def timed(stage: str, energy_kwh: float, start_s: float, end_s: float) -> EmissionRecord:
    """A record that ran from `start_s` to `end_s` seconds after midnight, 1 January 2026 (UTC)."""
    midnight = datetime(2026, 1, 1, tzinfo=UTC)
    started_at, ended_at = (
        (midnight + timedelta(seconds=s)).isoformat(timespec="milliseconds") for s in (start_s, end_s)
    )
    update = {"started_at": started_at, "ended_at": ended_at, "duration_s": end_s - start_s}
    return record(stage, energy_kwh).model_copy(update=update)


# one stage after the other: 100 s, then 200 s
RECORDS = {"a": timed("a", 0.001, 0, 100), "b": timed("b", 0.002, 100, 300)}


def test_training_sci_by_hand() -> None:
    sci = SciParams(embodied_kg=1000, lifetime_years=4, resource_share=0.5)
    score = footprint(plain(RECORDS), None, sci, None).training
    assert score is not None
    # E = 0.001 + 0.002 kWh; I = 400 g/kWh (each record's CO2 is energy x 0.4 kg/kWh); E x I = 1.2 g
    assert score.energy_kwh == pytest.approx(0.003)
    assert score.intensity_g_per_kwh == pytest.approx(400.0)
    assert score.operational_g == pytest.approx(1.2)
    # M = 1,000,000 g x (300 s / 126,230,400 s) x 0.5 = 1.18830... g
    assert score.embodied_g == pytest.approx(1_000_000 * 300 / 126_230_400 * 0.5)
    assert score.embodied_g == pytest.approx(1.188303, rel=1e-6)
    assert score.sci_g == pytest.approx(2.388303, rel=1e-6)
    terms = score.as_dict()
    assert terms["functional_unit"] == "one training run"
    assert set(terms["sources"]) == {"energy", "intensity", "embodied", "functional_unit"}
    assert terms["sources"]["intensity"] == "test"
    assert terms["estimates"] == ["embodied", "energy"]  # the records' CPU and RAM are estimates
    assert "sci.resource_share" in terms["sources"]["embodied"]  # a value the team gave, named


def test_inference_sci_by_hand() -> None:
    score = footprint({}, INFERENCE, SciParams(), None).inference
    assert score is not None
    # T per 1,000 predictions = 2 s / 1,000,000 x 1,000 = 0.002 s; M = 1,000,000 g x 0.002 / LIFE_S x 1
    assert score.time_s == pytest.approx(0.002)
    assert score.embodied_g == pytest.approx(1_000_000 * 0.002 / LIFE_S)
    assert score.operational_g == pytest.approx(8e-4)
    assert score.sci_g == pytest.approx(8e-4 + 1.584404e-5, rel=1e-6)
    assert score.as_dict()["sources"]["intensity"] == "test grid"
    assert score.as_dict()["estimates"] == ["embodied", "energy"]


def test_lifetime_by_hand() -> None:
    usage = PredictionUsage(per_day=1000, days=10)  # 10,000 predictions
    life = footprint(plain(RECORDS), INFERENCE, SciParams(), usage).lifetime
    assert life is not None
    # training 0.0012 kg; inference 0.0008 g per 1,000 x 10 = 0.008 g = 8e-6 kg
    assert life.training_co2_kg == pytest.approx(0.0012)
    assert life.inference_co2_kg == pytest.approx(8e-6)
    assert life.co2_kg == pytest.approx(0.001208)
    assert life.dominant == "training"
    assert life.break_even_predictions == pytest.approx(1_500_000)  # 1.2 g / 0.0008 g per 1,000
    document = life.as_dict(usage)
    assert document["co2_kg"] == pytest.approx(document["training_co2_kg"] + document["inference_co2_kg"])
    assert document["energy_kwh"] == pytest.approx(0.003 + 2e-6 * 10)
    heavy = footprint(plain(RECORDS), INFERENCE, SciParams(), PredictionUsage(per_day=1e6, days=365)).lifetime
    assert heavy is not None and heavy.dominant == "inference"


def test_a_record_without_a_figure_gives_no_score_rather_than_a_partial_one() -> None:
    """A run rebuilt from MLflow history may lack a stage's duration: no SCI, no lifetime, and no crash."""
    partial = {**plain(RECORDS), "c": {"energy_kwh": 0.001, "co2_kg": 0.0004, "duration_s": None}}
    usage = PredictionUsage(per_day=1, days=1)
    assert footprint(partial, INFERENCE, SciParams(), usage) == Footprint(
        inference=footprint({}, INFERENCE, SciParams(), None).inference, usage=usage
    )


def test_the_time_term_is_the_wall_clock_the_machine_was_held() -> None:
    """T is the union of the lines' intervals: the tool's own line, which runs beside the stages, adds only what
    lies outside them, and a gap between executions (a cached stage's older record) counts nothing."""
    itself = timed(ITSELF, 1e-5, -10, 290)  # its worker started 10 s before the first stage
    cached = timed("c", 0.0005, -86_400, -86_350)  # a stage that last ran the day before, 50 s
    score = footprint(plain({**RECORDS, ITSELF: itself, "c": cached}), None, SciParams(), None).training
    assert score is not None
    assert score.time_s == 10 + 300 + 50  # summed, the durations would say 100 + 200 + 300 + 50
    assert score.as_dict()["embodied"]["time_reserved_s"] == 360
    assert score.embodied_g == pytest.approx(1_000_000 * 360 / LIFE_S)


def test_a_stage_on_several_machines_holds_each_of_them() -> None:
    """Distributed training on 3 nodes holds 3 machines for its 100 s; the stage before it ran on node 0 alone."""
    train = timed("train", 0.003, 100, 200)
    node = {"hostname": "h", "processes": 1, "cpu_seconds": 1.0, "duration_s": 100.0, "methods": train.methods}
    figures = {"energy_kwh": 0.001, "cpu_energy_kwh": 0.0005, "gpu_energy_kwh": 0.0, "ram_energy_kwh": 0.0005}
    nodes = [NodeEnergy.model_validate({"node_rank": rank, "co2_kg": 4e-4, **node, **figures}) for rank in range(3)]
    records = {"prepare": timed("prepare", 0.001, 0, 100), "train": with_nodes(train, nodes)}
    score = footprint(plain(records), None, SciParams(), None).training
    assert score is not None and score.time_s == 100 + 3 * 100


def test_a_line_known_only_by_its_duration_counts_whole() -> None:
    """A summary (a run rebuilt from MLflow history) cannot be placed in time: its duration is added."""
    summary = {"energy_kwh": 0.001, "co2_kg": 0.0004, "duration_s": 42.0}
    score = footprint({**plain(RECORDS), "h": summary}, None, SciParams(), None).training
    assert score is not None and score.time_s == 300 + 42


def test_no_measurement_no_score() -> None:
    measured = footprint({}, {"energy_per_1k_predictions_kwh": 1e-6}, SciParams(), PredictionUsage(per_day=1, days=1))
    assert measured == Footprint(usage=PredictionUsage(per_day=1, days=1))
    assert measured.as_dict() == {"sci": {"training": None, "inference": None}, "lifetime": None}


# each new budget, set just under its figure: (key, limit)
OVER = [
    ("inference_wh_per_1k", 0.0019),  # measured 0.002 Wh
    ("inference_co2_g_per_1k", 0.00079),  # measured 0.0008 g
    ("lifetime_co2_kg", 0.0012),  # measured 0.001208 kg
    ("sci_g_per_run", 2.3),  # measured 2.388 g at resource share 0.5
    ("sci_g_per_1k_predictions", 0.0008),  # measured 0.000816 g
]


@pytest.mark.parametrize(("key", "limit"), OVER)
def test_each_new_budget_fails_the_gate_by_name(key: str, limit: float) -> None:
    measured = footprint(
        plain(RECORDS), INFERENCE, SciParams(resource_share=0.5), PredictionUsage(per_day=1000, days=10)
    )
    over = BudgetParams(energy_kwh=1.0, co2_kg=1.0, **{key: limit})
    verdict = check(over, RECORDS, None, None, [], footprint=measured)
    assert not verdict.passed
    assert [f for f in verdict.failures() if f"params.yaml budget.{key})" in f], verdict.failures()
    within = BudgetParams(energy_kwh=1.0, co2_kg=1.0, **{key: limit * 1.5})
    assert check(within, RECORDS, None, None, [], footprint=measured).passed


@pytest.mark.parametrize(("key", "limit"), OVER)
def test_a_budget_without_its_figure_fails_closed(key: str, limit: float) -> None:
    """No measured prediction (a project that exports nothing): a use budget cannot pass by default."""
    measured = footprint({}, None, SciParams(), PredictionUsage(per_day=1, days=1))
    verdict = check(BudgetParams(energy_kwh=1.0, co2_kg=1.0, **{key: limit}), {}, None, None, [], footprint=measured)
    assert not verdict.passed
    assert any(f.startswith(f"budget.{key}: ") for f in verdict.problems), verdict.problems


def test_lifetime_budget_needs_usage_and_bad_values_are_named() -> None:
    budget = {"energy_kwh": 1, "co2_kg": 1, "lifetime_co2_kg": 0.5}
    with pytest.raises(ParamsError, match=r"budget.lifetime_co2_kg = 0.5 needs usage.predictions"):
        gate_params({"budget": budget}, "params.yaml")
    assert gate_params({"budget": budget, "usage": {"predictions": {"per_day": 10, "days": 2}}}, "p").usage
    with pytest.raises(ParamsError, match=r"sci.resource_share = 2: Input should be less than or equal to 1"):
        gate_params({"budget": budget, "sci": {"resource_share": 2}}, "params.yaml")
    with pytest.raises(ParamsError, match=r"unknown key usage.predictions.per_week"):
        gate_params({"budget": budget, "usage": {"predictions": {"per_week": 1, "days": 2}}}, "params.yaml")


def test_gate_document_holds_both_scores_and_the_lifetime(tmp_path: Path) -> None:
    """metrics/gate.json as the gate writes it, from files: a project whose deploy metrics hold a measurement."""
    root = foreign_project(
        tmp_path,
        "budget:\n  energy_kwh: 1\n  co2_kg: 1\n  sci_g_per_run: 100\nusage:\n  predictions: {per_day: 10, days: 3}\n",
    )
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics/export.json").write_text(json.dumps({"deploy": {"inference": INFERENCE}}))
    verdict, evidence = judge_file(root / "params.yaml", root)
    assert verdict.passed, verdict.failures()
    document = json.loads(json.dumps(verdict_document(verdict, evidence)))
    training, inference = document["sci"]["training"], document["sci"]["inference"]
    assert training["sci_g"] == pytest.approx(training["operational_g"] + training["embodied_g"])
    assert training["operational_g"] == pytest.approx(training["energy_kwh"] * training["intensity_g_per_kwh"])
    assert training["energy_kwh"] == document["energy_kwh"]  # E is the gate's total
    assert inference["functional_unit"] == "1,000 predictions"
    assert document["lifetime"]["predictions"] == 30
    assert document["lifetime"]["training_co2_kg"] == pytest.approx(document["co2_kg"])
    assert [line["key"] for line in document["lines"]][-1] == "budget.sci_g_per_run"
