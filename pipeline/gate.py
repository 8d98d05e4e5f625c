"""Gather the evidence the gate judges, from files alone (no torch, no MLflow, no codecarbon).

The stages to account for are the emission records the gate stage depends on in dvc.yaml, so a stage cannot
drop out of the budget without a visible change to dvc.yaml. Each record must be complete, must say its
stage completed, and must belong to today's outputs and params: a stale record from an earlier run cannot
vouch for a new model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline import layout
from pipeline.budgets import Verdict, check, totals
from pipeline.config import Params
from pipeline.errors import PipelineError, RecordError
from pipeline.files import parse_yaml, read_json
from pipeline.lockfile import Lock, load_lock
from pipeline.payback import describe, distillation_payback
from pipeline.records import EmissionRecord, file_md5, load_record

GATE_STAGE = "gate"


@dataclass(frozen=True)
class Evidence:
    records: dict[str, EmissionRecord]
    problems: list[str]
    model_size_mb: float | None
    parameters: int | None
    accuracy: float | None
    deploy_path: str | None
    payback: dict[str, Any] | None = None


def budgeted_stages(dvc_yaml: Path) -> list[str]:
    """Stages whose records the gate stage depends on, in dvc.yaml order."""
    try:
        stages = (parse_yaml(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {})
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineError(f"cannot read {dvc_yaml}: {exc}") from None
    gate = stages.get(GATE_STAGE)
    if not isinstance(gate, dict):
        raise PipelineError(f"{dvc_yaml} has no {GATE_STAGE!r} stage")
    prefix = layout.RECORDS_DIR.as_posix() + "/"
    names = [d[len(prefix) : -len(".json")] for d in gate.get("deps", []) if str(d).startswith(prefix)]
    if not names:
        raise PipelineError(f"the {GATE_STAGE!r} stage in {dvc_yaml} depends on no emission record under {prefix}")
    return names


def _stale_reasons(record: EmissionRecord, params: Params, root: Path, lock: Lock | None) -> list[str]:
    reasons = lock.changed_inputs(record.stage, root) if lock else []
    for section, used in record.params.items():
        if not params.has_section(section) or params.section(section) != used:
            reasons.append(f"it was measured with other params.yaml `{section}` values")
    for output, digest in record.outputs.items():
        path = root / output
        if not path.is_file():
            reasons.append(f"its output {output} is missing")
        elif file_md5(path) != digest:
            reasons.append(f"its output {output} has changed since")
    return reasons


def _number(path: Path, key: str, problems: list[str]) -> Any:
    try:
        value = read_json(path)[key]
    except FileNotFoundError:
        problems.append(f"{path}: missing")
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problems.append(f"{path}: unreadable or lacks {key!r} ({exc})")
        return None
    return value


def gather(params: Params, root: Path) -> Evidence:
    problems: list[str] = []
    records: dict[str, EmissionRecord] = {}
    try:
        lock: Lock | None = load_lock(root)
    except RecordError as exc:
        problems.append(str(exc))
        lock = None
    # students are stages DVC makes from params (foreach), so params, not dvc.yaml, say which records they owe
    for stage in [*budgeted_stages(root / "dvc.yaml"), *params.distill.stage_names()]:
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
        for reason in _stale_reasons(record, params, root, lock):
            problems.append(f"{path}: stale record, {reason} (rerun `dvc repro {stage}`)")
        records[stage] = record
    export = _number(root / layout.EXPORT_METRICS, "deploy", problems)
    size_mb = parameters = deploy_path = None
    if isinstance(export, dict) and isinstance(export.get("path"), str):
        deploy_path = export["path"]
        artifact = root / deploy_path
        if artifact.is_file():
            size_mb = artifact.stat().st_size / 1e6
            parameters = export.get("parameters")
        else:
            problems.append(f"{deploy_path}: deployed model artifact is missing")
    if params.deployed_model() == "teacher":
        accuracy = _number(root / layout.EVALUATE_METRICS, "test_accuracy", problems)
    else:  # the accuracy budget holds for the model that ships: the student, as exported
        accuracy = export.get("accuracy") if isinstance(export, dict) else None
    payback = None
    if params.deployed_model() != "teacher" and isinstance(export, dict):
        export_document = read_json(root / layout.EXPORT_METRICS)
        payback = distillation_payback({n: r.model_dump(mode="json") for n, r in records.items()}, export_document)
    return Evidence(records, problems, size_mb, parameters, accuracy, deploy_path, payback)


def judge(params: Params, root: Path) -> tuple[Verdict, Evidence]:
    evidence = gather(params, root)
    accuracy = float(evidence.accuracy) if isinstance(evidence.accuracy, int | float) else None
    verdict = check(params.budget, evidence.records, evidence.model_size_mb, accuracy, evidence.problems)
    return verdict, evidence


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
