"""Budgets against figures: pure functions over plain data, so the rules are tested without DVC or MLflow.

A verdict passes only when every budget line passes and nothing is missing: a record that could not be read,
or a figure that could not be found, is a failure, never a silent pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from carbon_budget import layout
from carbon_budget.config import PARAMS_FILE, BudgetParams, ReportParams
from carbon_budget.gate.footprint import Footprint
from carbon_budget.records.record import EmissionRecord


@dataclass(frozen=True)
class BudgetLine:
    """One budget compared with one figure; `key` is where the budget lives in params.yaml."""

    name: str
    key: str
    unit: str
    limit: float
    measured: float
    method: str = ""
    higher_is_better: bool = False
    # the band repeated measurements of this figure move in (`report.noise_pct`), 0 for figures that are the work
    # itself (a model's size, its accuracy): a budget inside it passes or fails by chance
    noise_pct: float = 0.0
    # the params file the budget was read from, which the failure names
    params_file: str = PARAMS_FILE
    # False when evidence the figure sums is missing (a stage's record): the figure is then no measurement at all
    complete: bool = True

    @property
    def passed(self) -> bool:
        if not self.complete:
            return False
        return self.measured >= self.limit if self.higher_is_better else self.measured <= self.limit

    @property
    def headroom(self) -> float:
        """How far the figure is from its limit, in the line's unit; negative when over budget."""
        return self.measured - self.limit if self.higher_is_better else self.limit - self.measured

    @property
    def within_noise(self) -> bool:
        """The limit lies inside the figure's noise band: rerunning the same commit can flip this line."""
        return abs(self.headroom) <= abs(self.measured) * self.noise_pct / 100

    def failure(self) -> str:
        relation = "<" if self.higher_is_better else ">"
        return (
            f"{self.name}: {self.measured:.6g} {self.unit} {relation} budget {self.limit:.6g} {self.unit}"
            f" ({self.params_file} {self.key})"
        )


@dataclass(frozen=True)
class Verdict:
    lines: list[BudgetLine]
    problems: list[str] = field(default_factory=list)
    # what would have helped, shown after the failures and deciding nothing (a cleaner window for a CO2 budget)
    advice: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems and all(line.passed for line in self.lines)

    def over(self) -> list[BudgetLine]:
        """The lines over their budget; a line whose figure is unknown is not one (its missing evidence is)."""
        return [line for line in self.lines if line.complete and not line.passed]

    def failures(self) -> list[str]:
        return [*self.problems, *(line.failure() for line in self.over())]

    def heading(self) -> str:
        """What a failing verdict is, in the words the gate, its table and the report all use: over budget and
        unverifiable are different news."""
        over = bool(self.over())
        if over and self.problems:
            return "carbon budget exceeded, and its evidence is missing or broken"
        if over:
            return "carbon budget exceeded"
        return "carbon budget cannot be verified: its evidence is missing or broken"

    def summary(self) -> str:
        """The message a failing gate ends with."""
        return self.heading() + ":\n  " + "\n  ".join([*self.failures(), *(f"hint: {a}" for a in self.advice)])


@dataclass(frozen=True)
class Totals:
    energy_kwh: float
    co2_kg: float
    duration_s: float
    method: str


def totals(records: dict[str, EmissionRecord]) -> Totals:
    """The cost of producing the current artifacts: every stage's record, whether it ran now or was cached."""
    kinds = {r.methods.summary() for r in records.values()}
    return Totals(
        energy_kwh=sum(r.energy_kwh for r in records.values()),
        co2_kg=sum(r.co2_kg for r in records.values()),
        duration_s=sum(r.duration_s for r in records.values()),
        method=kinds.pop() if len(kinds) == 1 else "mixed",
    )


def check(
    budget: BudgetParams,
    records: dict[str, EmissionRecord],
    model_size_mb: float | None,
    accuracy: float | None,
    problems: list[str],
    noise_pct: float = ReportParams().noise_pct,
    footprint: Footprint | None = None,
    params_file: str = PARAMS_FILE,
    missing: tuple[str, ...] = (),
) -> Verdict:
    """Compare every configured budget with its figure; a figure that is None is a problem, not a pass.

    Energy and CO2 are always judged; model size, accuracy and the deployed model's use (`footprint`: its
    energy per prediction, lifetime and SCI) only when their budget is set. Measured figures carry `noise_pct`,
    the band their repeated measurement moves in, so a budget set inside it shows as one. `missing` names owed
    stages without a record: the totals then sum part of the pipeline and are shown as unknown, never as a pass."""
    problems = list(problems)
    total = totals(records)
    lines = [
        BudgetLine(
            "energy (total)",
            "budget.energy_kwh",
            "kWh",
            budget.energy_kwh,
            total.energy_kwh,
            total.method,
            noise_pct=noise_pct,
            complete=not missing,
        ),
        BudgetLine(
            "co2 (total)",
            "budget.co2_kg",
            "kg",
            budget.co2_kg,
            total.co2_kg,
            total.method,
            noise_pct=noise_pct,
            complete=not missing,
        ),
    ]
    for stage, stage_budget in sorted(budget.stages.items()):
        record = records.get(stage)
        if record is None:
            problems.append(f"budget.stages.{stage}: no emission record for stage {stage!r}")
            continue
        method = record.methods.summary()
        for attribute, unit in (("energy_kwh", "kWh"), ("co2_kg", "kg"), ("duration_s", "s")):
            limit = getattr(stage_budget, attribute)
            if limit is not None:
                key = f"budget.stages.{stage}.{attribute}"
                name = f"{stage} {attribute.rsplit('_', 1)[0]}"
                lines.append(
                    BudgetLine(name, key, unit, limit, getattr(record, attribute), method, noise_pct=noise_pct)
                )
    if budget.model_size_mb is not None:
        if model_size_mb is None:
            problems.append("model size unknown: the deployed model artifact is missing")
        else:
            lines.append(BudgetLine("model size", "budget.model_size_mb", "MB", budget.model_size_mb, model_size_mb))
    if budget.min_accuracy is not None:
        if accuracy is None:
            problems.append(
                "test accuracy unknown: nothing states the deployed model's accuracy (`deploy.accuracy` in"
                " metrics/export.json)"
            )
        else:
            lines.append(
                BudgetLine(
                    "test accuracy", "budget.min_accuracy", "", budget.min_accuracy, accuracy, higher_is_better=True
                )
            )
    lines += _footprint_lines(budget, footprint or Footprint(), problems, noise_pct)
    return Verdict([replace(line, params_file=params_file) for line in lines], problems)


def _footprint_lines(
    budget: BudgetParams, footprint: Footprint, problems: list[str], noise_pct: float
) -> list[BudgetLine]:
    """The budgets on the deployed model's use; one that is set without its figure is a problem naming it."""
    inference, training, lifetime = footprint.inference, footprint.training, footprint.lifetime
    inference_how = "estimated" if inference and inference.energy_estimated else "measured"
    unmeasured = "the deployed model's energy per prediction is unknown (no `deploy.inference` in metrics/export.json)"
    wanted: list[tuple[str, str, str, float | None, str, str]] = [
        ("inference per 1k", "inference_wh_per_1k", "Wh",
         inference.energy_kwh * 1000 if inference else None, inference_how, unmeasured),
        ("inference co2 per 1k", "inference_co2_g_per_1k", "g",
         inference.operational_g if inference else None, inference_how, unmeasured),
        ("lifetime co2", "lifetime_co2_kg", "kg",
         lifetime.co2_kg if lifetime else None, inference_how,
         "the lifetime footprint is unknown: " + unmeasured),
        ("SCI per run", "sci_g_per_run", "g",
         training.sci_g if training else None, "estimated", "no stage record to score"),
        ("SCI per 1k predictions", "sci_g_per_1k_predictions", "g",
         inference.sci_g if inference else None, "estimated", unmeasured),
    ]  # fmt: skip
    lines = []
    for name, attribute, unit, measured, how, missing in wanted:
        limit = getattr(budget, attribute)
        if limit is None:
            continue
        if measured is None:
            problems.append(f"budget.{attribute}: {missing}")
        else:
            lines.append(BudgetLine(name, f"budget.{attribute}", unit, limit, measured, how, noise_pct=noise_pct))
    return lines


def vouch(stage: str, record: EmissionRecord, path: Path | None = None) -> list[str]:
    """Why `stage`'s record (at `path`, by default where stages keep theirs) cannot vouch for it, whoever reads it
    (the gate, or export writing the model card): another stage's record, a stage that never finished or failed,
    or figures that do not hold together. The tool's own line is held to the same checks."""
    path = path or layout.record_path(stage)
    problems = []
    if record.stage != stage:
        problems.append(f"{path}: holds the record of stage {record.stage!r}, not of {stage!r}")
    if record.status == "running":
        problems.append(
            f"{path}: stage {stage} never finished: killed without warning (SIGKILL, out of memory) or still"
            f" running; its last checkpoint holds {record.energy_kwh:.4g} kWh spent"
        )
    elif record.status != "completed":
        problems.append(f"{path}: stage {stage} did not complete ({record.status}: {record.error})")
    else:
        problems.extend(f"{path}: cannot vouch for stage {stage}: {doubt}" for doubt in record.doubts())
    return problems
