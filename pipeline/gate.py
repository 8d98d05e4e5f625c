"""Gather the evidence the gate judges, from files alone (no torch, no MLflow, no codecarbon).

The stages to account for are the emission records the gate stage depends on in dvc.yaml (this pipeline's
`gate`, or the `carbon_gate` that `carbon-budget init` adds to any project), so a stage cannot drop out of the
budget without a visible change to dvc.yaml. Each record must be complete, must say its
stage completed, and must belong to today's outputs and params: a stale record from an earlier run cannot
vouch for a new model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import layout
from pipeline.budgets import Verdict, check, totals
from pipeline.config import BudgetParams, Params, load_params, parse_section, read_params_file
from pipeline.dvcyaml import entry_path, read_stages
from pipeline.errors import PipelineError, RecordError
from pipeline.files import read_json
from pipeline.lockfile import Lock, load_lock
from pipeline.payback import describe, distillation_payback
from pipeline.records import EmissionRecord, file_drift, load_record

GATE_STAGE = "gate"  # this pipeline's own gate stage
INIT_GATE_STAGE = "carbon_gate"  # the one `carbon-budget init` adds to any project: unlikely to be taken already
GATE_STAGES = (INIT_GATE_STAGE, GATE_STAGE)


@dataclass(frozen=True)
class Scope:
    """What a project's params ask the gate to judge. This pipeline's params say everything; a project that only
    went through `carbon-budget init` has a budget alone, so no model, no students and none of our sections."""

    budget: BudgetParams
    section_now: Callable[[str], dict[str, Any] | None]  # a recorded section's value today; None once it is gone
    owed_stages: tuple[str, ...] = ()  # records params owe beyond dvc.yaml: the students DVC makes with foreach
    deployed_model: str = "teacher"  # the model whose accuracy is judged: 'teacher' or a student

    @classmethod
    def of_pipeline(cls, params: Params) -> Scope:
        return cls(
            params.budget,
            params.find_section,
            tuple(params.distill.stage_names()),
            params.deployed_model(),
        )

    @classmethod
    def of_project(cls, budget: BudgetParams) -> Scope:
        return cls(budget, lambda _name: None)


@dataclass(frozen=True)
class Evidence:
    records: dict[str, EmissionRecord]
    problems: list[str]
    model_size_mb: float | None
    parameters: int | None
    accuracy: float | None
    deploy_path: str | None
    payback: dict[str, Any] | None = None


def gate_stage(dvc_yaml: Path) -> tuple[str, dict[str, Any]]:
    """The gate stage and its name: `carbon_gate` when `carbon-budget init` added one, else this pipeline's."""
    stages = read_stages(dvc_yaml)
    for name in GATE_STAGES:
        if isinstance(stages.get(name), dict):
            return name, stages[name]
    expected = " or ".join(repr(name) for name in GATE_STAGES)
    raise PipelineError(f"{dvc_yaml} has no gate stage ({expected}; `carbon-budget init` adds one)")


def budgeted_stages(dvc_yaml: Path) -> list[str]:
    """Stages whose records the gate stage depends on, in dvc.yaml order."""
    _, gate = gate_stage(dvc_yaml)
    prefix = layout.RECORDS_DIR.as_posix() + "/"
    deps = [entry_path(d) for d in gate.get("deps") or []]
    names = [d[len(prefix) : -len(".json")] for d in deps if d.startswith(prefix) and d.endswith(".json")]
    if not names:
        raise PipelineError(f"the gate stage in {dvc_yaml} depends on no emission record under {prefix}")
    return names


def _stale_reasons(record: EmissionRecord, scope: Scope, root: Path, lock: Lock | None) -> list[str]:
    reasons = lock.changed_inputs(record.stage, root) if lock else []
    for section, used in record.params.items():
        if scope.section_now(section) != used:
            reasons.append(f"it was measured with other params.yaml `{section}` values")
    for output, digest in record.outputs.items():
        drift = file_drift(root / output, digest)
        if drift is not None:
            reasons.append(f"its output {output} {drift}" + (" since" if drift == "has changed" else ""))
    return reasons


def _metrics_with(path: Path, key: str, problems: list[str], required: bool) -> dict[str, Any] | None:
    """A metrics file that holds `key`; missing, unreadable or without it is a problem only when a budget needs
    it. The whole document comes back: a deployed student's comparison with its teacher lives beside `deploy`."""
    try:
        document = read_json(path)
        document[key]  # KeyError without it, TypeError when the file is not a mapping
    except FileNotFoundError:
        reason = "missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"unreadable or lacks {key!r} ({exc})"
    else:
        return document
    if required:
        problems.append(f"{path}: {reason}")
    return None


def gather(scope: Scope, root: Path) -> Evidence:
    problems: list[str] = []
    records: dict[str, EmissionRecord] = {}
    try:
        lock: Lock | None = load_lock(root)
    except RecordError as exc:
        problems.append(str(exc))
        lock = None
    for stage in [*budgeted_stages(root / "dvc.yaml"), *scope.owed_stages]:
        path = layout.record_path(stage)
        try:
            record = load_record(root / path)
        except RecordError as exc:
            problems.append(str(exc))
            continue
        if record.stage != stage:
            problems.append(f"{path}: holds the record of stage {record.stage!r}, not of {stage!r}")
        if record.status != "completed":
            problems.append(f"{path}: stage {stage} did not complete ({record.status}: {record.error})")
        for reason in _stale_reasons(record, scope, root, lock):
            problems.append(f"{path}: stale record, {reason} (rerun `dvc repro {stage}`)")
        records[stage] = record
    size_required = scope.budget.model_size_mb is not None
    export_document = _metrics_with(root / layout.EXPORT_METRICS, "deploy", problems, size_required)
    export = export_document["deploy"] if export_document else None
    size_mb = parameters = deploy_path = None
    if isinstance(export, dict) and isinstance(export.get("path"), str):
        deploy_path = export["path"]
        artifact = root / deploy_path
        if artifact.is_file():
            size_mb = artifact.stat().st_size / 1e6
            parameters = export.get("parameters")
        elif size_required:
            problems.append(f"{deploy_path}: deployed model artifact is missing")
    payback = None
    if scope.deployed_model == "teacher":
        accuracy_required = scope.budget.min_accuracy is not None
        evaluation = _metrics_with(root / layout.EVALUATE_METRICS, "test_accuracy", problems, accuracy_required)
        accuracy = evaluation["test_accuracy"] if evaluation else None
    else:  # the accuracy budget holds for the model that ships: the student, as exported
        accuracy = export.get("accuracy") if isinstance(export, dict) else None
        if isinstance(export, dict) and export_document:
            payback = distillation_payback({n: r.model_dump(mode="json") for n, r in records.items()}, export_document)
    return Evidence(records, problems, size_mb, parameters, accuracy, deploy_path, payback)


def judge(scope: Scope, root: Path) -> tuple[Verdict, Evidence]:
    evidence = gather(scope, root)
    accuracy = float(evidence.accuracy) if isinstance(evidence.accuracy, int | float) else None
    verdict = check(scope.budget, evidence.records, evidence.model_size_mb, accuracy, evidence.problems)
    return verdict, evidence


def judge_file(params_file: Path, root: Path) -> tuple[Verdict, Evidence]:
    """`carbon-budget gate` and `report`. In this pipeline, params.yaml is validated whole, as its stages read it;
    in a project with the `carbon_gate` stage `init` adds, only its `budget:` section is read, so the project's
    own keys are never judged."""
    name, _ = gate_stage(root / "dvc.yaml")
    if name == GATE_STAGE:
        return judge(Scope.of_pipeline(load_params(params_file)), root)
    budget = parse_section(read_params_file(params_file), "budget", BudgetParams, str(params_file))
    return judge(Scope.of_project(budget), root)


def publish(
    experiment: str,
    params: dict[str, Any],
    document: dict[str, Any],
    evidence: Evidence,
    own_records: list[EmissionRecord],
    root: Path,
    pictures: list[Path],
    uri: str,
) -> str:
    """Freeze the execution into the outbox, then hand it to MLflow (a parent run, a child per stage); returns the
    line saying where its runs are. MLflow is imported only here, and only by the process that publishes.

    Raises PublishError naming the kept snapshot when MLflow did not take it: the verdict never waits on MLflow.
    """
    from pipeline import tracking

    folder = tracking.write_snapshot(
        experiment, params, document, list(evidence.records.values()), own_records, root, pictures
    )
    try:
        published = tracking.deliver(folder, uri)
    except tracking.PublishError as exc:
        raise tracking.PublishError(
            f"{exc}\nwarning: kept in {folder}; run `carbon-budget sync` once MLflow is back"
        ) from None
    return f"MLflow: {published.new_runs} new runs; compare them at {published.ui_url}"


def verdict_document(verdict: Verdict, evidence: Evidence) -> dict[str, Any]:
    """metrics/gate.json: the verdict with raw figures, for DVC, the report and MLflow."""
    total = totals(evidence.records)
    return {
        "passed": verdict.passed,
        "failures": verdict.failures(),
        "lines": [
            {
                "name": line.name,
                "key": line.key,
                "unit": line.unit,
                "limit": line.limit,
                "measured": line.measured,
                "headroom": line.headroom,
                "passed": line.passed,
                "method": line.method,
            }
            for line in verdict.lines
        ],
        "energy_kwh": total.energy_kwh,
        "co2_kg": total.co2_kg,
        "duration_s": total.duration_s,
        "measurement": total.method,
        "model_size_mb": evidence.model_size_mb,
        "deploy_path": evidence.deploy_path,
        "parameters": evidence.parameters,
        "test_accuracy": evidence.accuracy,
        "distillation": evidence.payback,
        "stages": {
            name: {
                "energy_kwh": r.energy_kwh,
                "co2_kg": r.co2_kg,
                "duration_s": r.duration_s,
                "measurement": r.methods.summary(),
            }
            for name, r in evidence.records.items()
        },
    }


def render(verdict: Verdict, payback: dict[str, Any] | None = None) -> str:
    """The table people read in the terminal and in `dvc repro` output."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    table = Table(title="carbon budget", title_justify="left")
    for column in ("budget", "limit", "measured", "headroom", "how", "verdict"):
        table.add_column(column, justify="right" if column in ("limit", "measured", "headroom") else "left")
    for line in verdict.lines:
        table.add_row(
            f"{line.name} ({line.key})",
            f"{line.limit:.4g} {line.unit}",
            f"{line.measured:.4g} {line.unit}",
            f"{line.headroom:+.3g}",
            line.method or "-",
            "pass" if line.passed else "FAIL",
        )
    buffer = StringIO()
    console = Console(file=buffer, width=120, color_system=None)
    console.print(table)
    if payback is not None:
        console.print(describe(payback), highlight=False, markup=False)
    for problem in verdict.problems:
        console.print(f"FAIL {problem}", highlight=False, markup=False)
    console.print("gate: " + ("PASSED" if verdict.passed else "FAILED"), highlight=False)
    return buffer.getvalue()


def plot_rows(document: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """DVC plot data: energy per stage (bars), and one point of accuracy against energy per revision, so
    `dvc plots diff main <exp>...` overlays experiments."""
    per_stage = [
        {
            "stage": name,
            "energy_wh": figures["energy_kwh"] * 1000,
            "co2_g": figures["co2_kg"] * 1000,
            "measurement": figures["measurement"],
        }
        for name, figures in document["stages"].items()
    ]
    efficiency = [
        {
            "energy_wh": document["energy_kwh"] * 1000,
            "test_accuracy": document["test_accuracy"],
            "model_size_mb": document["model_size_mb"],
        }
    ]
    return per_stage, efficiency
