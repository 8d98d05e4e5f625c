"""Gather the evidence the gate judges, from files alone (no torch, no MLflow, no codecarbon).

The stages to account for are every stage of the pipeline (gate.accounting): each record must be complete, must
say its stage completed, and must belong to today's outputs and params: a stale record from an earlier run cannot
vouch for a new model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.config import (
    PARAMS_FILE,
    CarbonParams,
    GateParams,
    gate_params,
    parse_section,
    read_params_file,
    section_value,
)
from carbon_budget.errors import RecordError
from carbon_budget.files import read_json, write_text_atomic
from carbon_budget.gate.accounting import INIT_GATE_STAGE, account, accounting_problems
from carbon_budget.gate.budgets import Verdict, check, totals, vouch
from carbon_budget.gate.footprint import Footprint, footprint
from carbon_budget.gate.payback import distillation_payback
from carbon_budget.gate.shifting import CleanerWindow, find_cleaner_window, read_outcome, saving
from carbon_budget.measure.dvc_share import dvc_own_cpu_seconds
from carbon_budget.records.lockfile import Lock, load_lock
from carbon_budget.records.record import EmissionRecord, file_drift, load_record


@dataclass(frozen=True)
class Evidence:
    records: dict[str, EmissionRecord]
    problems: list[str]
    model_size_mb: float | None
    parameters: int | None
    accuracy: float | None
    deploy_path: str | None
    payback: dict[str, Any] | None = None
    footprint: Footprint = field(default_factory=Footprint)
    # what the `dvc` process running the gate spent itself so far: no stage's cost, shown apart, never charged
    dvc_own_cpu_s: float | None = None
    # stages params.yaml exempts from measurement, with the reason given there
    exempt: dict[str, str] = field(default_factory=dict)
    # stages the gate owes a record that it could not read: no total over the pipeline is known without them
    missing: tuple[str, ...] = ()
    # what the wait this execution ran under saved against starting at once (`shifting.saving`), if it ran under one
    carbon_aware: dict[str, Any] | None = None
    # a window within the next day where the CO2 budget exceeded now would have held (`shifting.cleaner_window`)
    cleaner_window: CleanerWindow | None = None

    def dvc_own_j(self) -> float | None:
        """DVC's own CPU-seconds at the per-thread TDP the stage records charged, where one names a TDP."""
        rates = [r.hardware.cpu_tdp_w / r.hardware.cpu_count for r in self.records.values() if r.hardware.cpu_tdp_w]
        return self.dvc_own_cpu_s * rates[0] if rates and self.dvc_own_cpu_s is not None else None


def _stale_reasons(
    record: EmissionRecord, params: dict[str, Any], root: Path, lock: Lock | None, params_file: str
) -> list[str]:
    reasons = []
    if lock is not None:
        reasons += lock.changed_inputs(record.stage, root)
        reasons += lock.disowned_outputs(record.stage, root, layout.record_path(record.stage), record.outputs)
    for section, used in record.params.items():
        if section_value(params, section) != used:
            reasons.append(f"it was measured with other {params_file} `{section}` values")
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


def gather(
    gate: GateParams, params: dict[str, Any], root: Path, params_file: str = PARAMS_FILE, deciding: bool = False
) -> Evidence:
    """Every record the gate accounts for, checked, and the deployed model's figures (from DEPLOY_METRICS) that
    the size, accuracy and footprint budgets need; what is missing or doubtful becomes a problem, never a pass.

    `deciding`: this gate decides an execution (the gate stage, `carbon-budget gate --publish`); it counts the
    newest record of the tool's own cost and notes which, so every later reading of the same execution (a plain
    `carbon-budget gate`, the report) counts the same line and reaches the same totals."""
    budget = gate.budget
    problems: list[str] = []
    records: dict[str, EmissionRecord] = {}
    stale: dict[str, list[str]] = {}  # stage -> why its record is stale
    try:
        lock: Lock | None = load_lock(root)
    except RecordError as exc:
        problems.append(str(exc))
        lock = None
    accounting = account(root, dict(budget.exempt))
    problems += accounting_problems(accounting, params_file)
    for stage in accounting.recorded:
        path = layout.record_path(stage)
        after = "" if stage in accounting.upstream else _runs_after_the_gate(stage, accounting.gate)
        try:
            record = load_record(root / path)
        except RecordError as exc:
            problems.append(f"{exc}{after}")
            continue
        problems.extend(vouch(stage, record))
        reasons = _stale_reasons(record, params, root, lock, params_file)
        problems.extend(f"{path}: stale record, {reason} (rerun `dvc repro {stage}`){after}" for reason in reasons)
        if reasons:
            stale[stage] = reasons
        records[stage] = record
    model_required = budget.model_size_mb is not None or budget.min_accuracy is not None
    document = _metrics_with(root / layout.DEPLOY_METRICS, "deploy", problems, model_required)
    deployed = document["deploy"] if document else None
    size_mb = parameters = deploy_path = accuracy = None
    if isinstance(deployed, dict) and isinstance(deployed.get("path"), str):
        deploy_path = deployed["path"]
        artifact = root / deploy_path
        if artifact.is_file():
            size_mb = artifact.stat().st_size / 1e6
            parameters = deployed.get("parameters")
            if not isinstance(deployed.get("md5"), str):
                problems.append(
                    f"{layout.DEPLOY_METRICS}: `deploy.md5` is missing, so nothing shows {deploy_path} is the"
                    " artifact export measured (rerun `dvc repro`)"
                )
            elif (drift := file_drift(artifact, deployed["md5"])) is not None:
                problems.append(
                    f"{deploy_path}: not the artifact {layout.DEPLOY_METRICS} states was deployed (it {drift} since;"
                    " rerun `dvc repro`)"
                )
        elif model_required:
            problems.append(f"{deploy_path}: deployed model artifact is missing")
        for stage, reasons in ((s, r) for s, r in stale.items() if deploy_path in records[s].outputs):
            problems.append(
                f"{deploy_path}: not known to be the model today's params, code and data deploy: {stage}, which"
                f" wrote it, is stale ({'; '.join(reasons)}; rerun `dvc repro {stage}`)"
            )
    if isinstance(deployed, dict):
        accuracy = deployed.get("accuracy")  # the artifact's own, whatever model it came from
        if budget.min_accuracy is not None and not isinstance(accuracy, int | float):
            problems.append(f"{layout.DEPLOY_METRICS}: `deploy.accuracy` is missing")
    itself, doubt = own_cost(root, deciding)
    if itself is not None:
        records[layout.ITSELF] = itself
    problems.extend(doubt)
    plain = {n: r.model_dump(mode="json") for n, r in records.items()}  # the payback finds its stages by name
    payback = distillation_payback(plain, document) if document else None
    inference = deployed.get("inference") if isinstance(deployed, dict) else None
    measured = footprint(plain, inference, gate.sci, gate.usage.predictions)
    return Evidence(
        records,
        problems,
        size_mb,
        parameters,
        accuracy,
        deploy_path,
        payback,
        measured,
        dvc_own_cpu_seconds(),
        accounting.exempt,
        tuple(stage for stage in [*accounting.recorded, *accounting.unmeasured] if stage not in records),
    )


def _runs_after_the_gate(stage: str, gate: str) -> str:
    """Why a stage outside the gate's deps can leave its record missing or stale when the gate reads it, and the
    fix: DVC orders stages by their deps alone, so it may run this one after the gate."""
    fix = " (`carbon-budget init` does it)" if gate == INIT_GATE_STAGE else ""
    return (
        f"; stage {stage} is not among the deps of stage {gate}, so DVC may run it after the gate: add"
        f" {layout.record_path(stage)} to {gate}'s deps in dvc.yaml{fix}"
    )


def own_cost(root: Path, deciding: bool) -> tuple[EmissionRecord | None, list[str]]:
    """The tool's own cost this gate counts, and why it cannot vouch for it (checked as a stage's record is).

    A deciding gate takes the newest record (the worker's warm-up, MLflow publishing, pictures and the model of
    the latest execution it published on this machine; none in a fresh clone) and keeps a copy of what it
    counted; every other reading takes that copy, so `carbon-budget gate`, metrics/gate.json and the report agree
    on an execution even after its own publishing has written a newer record, which the next execution counts."""
    counted = root / layout.ITSELF_COUNTED
    if deciding:
        source = root / layout.ITSELF_RECORD
        text = source.read_text(encoding="utf-8") if source.is_file() else "null\n"
        write_text_atomic(counted, text)
    else:
        source = counted
        text = source.read_text(encoding="utf-8") if source.is_file() else "null\n"
    if text.strip() == "null":
        return None, []
    try:
        record = load_record(source)
    except RecordError as exc:
        return None, [
            f"cannot vouch for the tool's own cost ({layout.ITSELF}): {exc} (the next execution's"
            f" publishing rewrites it; delete {layout.STATE_DIR}/itself*.json to start afresh)"
        ]
    return record, vouch(layout.ITSELF, record, source.relative_to(root))


def judge(
    gate: GateParams,
    params: dict[str, Any],
    root: Path,
    params_file: str = PARAMS_FILE,
    deciding: bool = False,
    now: datetime | None = None,
) -> tuple[Verdict, Evidence]:
    """The verdict on the project at `root`; `params` is the params file (`params_file`) as plain data, as the
    records keep it, and `gate` its sections the gate reads (the band measured figures move in is
    `report.noise_pct`). `deciding`: see `gather`. `now` (the clock by default) places the evidence in time: the
    wait still running, and the day a cleaner window is looked for in (`shifting.py`)."""
    now = now or datetime.now(UTC)
    evidence = gather(gate, params, root, params_file, deciding)
    evidence = replace(evidence, carbon_aware=saving(read_outcome(root), evidence.records, now))
    accuracy = float(evidence.accuracy) if isinstance(evidence.accuracy, int | float) else None
    verdict = check(
        gate.budget,
        evidence.records,
        evidence.model_size_mb,
        accuracy,
        evidence.problems,
        gate.report.noise_pct,
        evidence.footprint,
        params_file,
        evidence.missing,
    )
    window = _cleaner_window(verdict, evidence, params, root, params_file, now)
    if window is None:
        return verdict, evidence
    return replace(verdict, advice=(window.hint(),)), replace(evidence, cleaner_window=window)


def _cleaner_window(
    verdict: Verdict, evidence: Evidence, params: dict[str, Any], root: Path, params_file: str, now: datetime
) -> CleanerWindow | None:
    """Only a CO2 total over its budget, with `carbon.intensity_series` set, looks for a cleaner window: a gate
    that passes never reads a forecast, nor asks a provider."""
    over = [line for line in verdict.over() if line.key == "budget.co2_kg"]
    source = parse_section(params, "carbon", CarbonParams, params_file).intensity_series if over else None
    if source is None:
        return None
    total = totals(evidence.records)
    duration = timedelta(seconds=total.duration_s)
    return find_cleaner_window(source, root, total.energy_kwh, duration, over[0].limit, now)


def judge_file(
    params_file: Path, root: Path, deciding: bool = False, now: datetime | None = None
) -> tuple[Verdict, Evidence]:
    """`carbon-budget gate` and `report`: only the sections the gate reads are validated here, so a project's
    own keys are never judged (its stages validate them; `carbon` only when a cleaner window is looked for)."""
    raw = read_params_file(params_file)
    return judge(gate_params(raw, str(params_file)), raw, root, str(params_file), deciding, now)


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
                "noise_pct": line.noise_pct,
                "within_noise": line.within_noise,
                "complete": line.complete,
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
        **evidence.footprint.as_dict(),
        "dvc_own_cpu_s": evidence.dvc_own_cpu_s,
        "dvc_own_j": evidence.dvc_own_j(),
        "exempt": evidence.exempt,
        "carbon_aware": evidence.carbon_aware,
        "cleaner_window": evidence.cleaner_window.as_dict() if evidence.cleaner_window else None,
        "stages": {
            name: {
                "energy_kwh": r.energy_kwh,
                "co2_kg": r.co2_kg,
                "duration_s": r.duration_s,
                "started_at": r.started_at,
                "ended_at": r.ended_at,
                "measurement": r.methods.summary(),
            }
            for name, r in evidence.records.items()
        },
    }
