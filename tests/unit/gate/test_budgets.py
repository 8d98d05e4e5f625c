"""The budget rules, on plain data."""

from __future__ import annotations

from carbon_budget.config import BudgetParams, StageBudget
from carbon_budget.gate.budgets import BudgetLine, Verdict, check, totals
from tests.conftest import record

BUDGET = BudgetParams(energy_kwh=1.0, co2_kg=1.0, model_size_mb=1.0, min_accuracy=0.9)


def test_totals_count_every_stage() -> None:
    records = {"a": record("a", 0.25), "b": record("b", 0.5)}
    total = totals(records)
    assert total.energy_kwh == 0.75
    assert total.method == "estimated"


def test_within_budget_passes() -> None:
    verdict = check(BUDGET, {"a": record("a", 0.5)}, model_size_mb=0.5, accuracy=0.95, problems=[])
    assert verdict.passed
    assert not verdict.failures()


def test_over_energy_budget_names_key_and_both_numbers() -> None:
    verdict = check(BUDGET, {"a": record("a", 0.6), "b": record("b", 0.6)}, 0.5, 0.95, [])
    assert not verdict.passed
    (failure,) = verdict.failures()
    assert "budget.energy_kwh" in failure and "1.2 kWh" in failure and "budget 1 kWh" in failure


def test_accuracy_floor_and_size_limit() -> None:
    verdict = check(BUDGET, {"a": record("a", 0.1)}, model_size_mb=2.0, accuracy=0.5, problems=[])
    failures = "\n".join(verdict.failures())
    assert "budget.model_size_mb" in failures and "budget.min_accuracy" in failures


def test_missing_evidence_fails_closed() -> None:
    verdict = check(BUDGET, {"a": record("a", 0.1)}, model_size_mb=None, accuracy=None, problems=[])
    assert not verdict.passed
    assert any("model size unknown" in f for f in verdict.failures())
    assert any("accuracy unknown" in f for f in verdict.failures())


def test_problems_alone_fail_the_verdict() -> None:
    verdict = check(BUDGET, {}, 0.1, 0.99, problems=["metrics/emissions/train.json: missing"])
    assert not verdict.passed


def test_stage_budget() -> None:
    budget = BudgetParams(
        energy_kwh=1.0, co2_kg=1.0, model_size_mb=1.0, stages={"train": StageBudget(energy_kwh=0.1, duration_s=10.0)}
    )
    verdict = check(budget, {"train": record("train", 0.2)}, 0.1, None, [])
    (failure,) = verdict.failures()
    assert "budget.stages.train.energy_kwh" in failure


def test_stage_budget_without_record_is_a_failure() -> None:
    budget = BudgetParams(energy_kwh=1.0, co2_kg=1.0, model_size_mb=1.0, stages={"distill": StageBudget(energy_kwh=1)})
    assert not check(budget, {}, 0.1, None, []).passed


def test_mixed_methods_are_reported_as_mixed() -> None:
    records = {"a": record("a", 0.1), "b": record("b", 0.1, cpu="measured:rapl")}
    assert totals(records).method == "mixed"


def test_a_budget_without_model_judges_energy_and_co2_alone() -> None:
    budget = BudgetParams(energy_kwh=1.0, co2_kg=1.0)
    verdict = check(budget, {"a": record("a", 0.5)}, model_size_mb=None, accuracy=None, problems=[])
    assert verdict.passed and [line.key for line in verdict.lines] == ["budget.energy_kwh", "budget.co2_kg"]


def test_a_failing_gate_says_whether_it_is_over_budget_or_unverifiable() -> None:
    over = BudgetLine("energy (total)", "budget.energy_kwh", "kWh", 1.0, 2.0)
    assert Verdict([over]).summary().startswith("carbon budget exceeded:\n  energy (total): 2 kWh > budget 1 kWh")
    broken = Verdict([], ["metrics/emissions/train.json: missing"])
    assert broken.summary().startswith("carbon budget cannot be verified")
    assert Verdict([over], ["x: missing"]).summary().startswith("carbon budget exceeded, and its evidence")


def test_a_budget_inside_the_noise_band_is_shown_as_one() -> None:
    """A limit 5 % above the figure passes today and may fail on a rerun of the same commit: the gate says so for
    measured figures, never for the model's size or accuracy (the work itself, not a measurement)."""
    from carbon_budget.gate.render import render

    budget = BudgetParams(energy_kwh=1.05, co2_kg=1.0, model_size_mb=1.0, min_accuracy=0.9)
    verdict = check(budget, {"a": record("a", 1.0)}, model_size_mb=0.99, accuracy=0.95, problems=[], noise_pct=10.0)
    lines = {line.key: line for line in verdict.lines}
    assert lines["budget.energy_kwh"].within_noise and lines["budget.energy_kwh"].passed
    assert not lines["budget.co2_kg"].within_noise  # 0.4 kg against 1 kg: far outside ±10 %
    assert not lines["budget.model_size_mb"].within_noise and lines["budget.model_size_mb"].noise_pct == 0.0
    over = check(budget, {"a": record("a", 1.1)}, 0.5, 0.95, [], noise_pct=10.0)
    assert not over.passed and {line.key: line for line in over.lines}["budget.energy_kwh"].within_noise
    assert not check(budget, {"a": record("a", 1.0)}, 0.5, 0.95, [], noise_pct=4.0).lines[0].within_noise
    table = render(verdict)
    assert "pass ~noise" in table and "±10 %" in table
    assert "~noise" not in render(check(BUDGET, {"a": record("a", 0.5)}, 0.5, 0.95, [], noise_pct=10.0))


def test_the_table_is_boxed_and_aligned_without_a_table_library() -> None:
    """The gate's table is plain text: every row as wide as the box, figures right-aligned, a missing unit
    leaving no stray space, and the gate's module importing no table library (it cost a sixth of the gate)."""
    import subprocess
    import sys

    from carbon_budget.gate.render import render, text_table

    table = text_table("t", ["name", "figure"], [["a", "1 kWh"], ["longer name", "0.5"]], right={1})
    title, top, head, rule, *rows, bottom = table.splitlines()
    assert title == "t" and top.startswith("┏") and rule.startswith("┡") and bottom.startswith("└")
    assert len({len(line) for line in (top, head, rule, *rows, bottom)}) == 1
    assert rows == ["│ a           │  1 kWh │", "│ longer name │    0.5 │"]
    text = render(check(BUDGET, {"a": record("a", 0.5)}, 0.5, 0.95, [], noise_pct=10.0))
    accuracy = next(line for line in text.splitlines() if "budget.min_accuracy" in line)
    assert "0.95 │" in accuracy and text.endswith("gate: PASSED\n")
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from carbon_budget.gate import budgets, render;"
            " render.render(budgets.Verdict([], ['x'])); print('rich' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"
