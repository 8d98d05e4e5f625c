"""Gather the evidence the gate judges, from files alone (no torch, no MLflow, no codecarbon).

The stages to account for are the emission records the gate stage depends on in dvc.yaml (a stage named
`gate`, or the `carbon_gate` that `carbon-budget init` adds to any project), so a stage cannot drop out of the
budget without a visible change to dvc.yaml. Each record must be complete, must say its
stage completed, and must belong to today's outputs and params: a stale record from an earlier run cannot
vouch for a new model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.config import GateParams, gate_params, read_params_file, section_value
from carbon_budget.errors import CarbonBudgetError, RecordError
from carbon_budget.files import read_json
from carbon_budget.gate.budgets import Verdict, check, totals, vouch
from carbon_budget.gate.footprint import Footprint, footprint
from carbon_budget.gate.footprint import describe as describe_footprint
from carbon_budget.gate.payback import describe, distillation_payback
from carbon_budget.measure.dvc_share import dvc_own_cpu_seconds
from carbon_budget.records.dvcyaml import entry_path, generated_recorded_stages, read_stages
from carbon_budget.records.lockfile import Lock, load_lock
from carbon_budget.records.record import EmissionRecord, file_drift, load_record

GATE_STAGE = "gate"  # a gate stage of one's own, as the reference pipeline has
INIT_GATE_STAGE = "carbon_gate"  # the one `carbon-budget init` adds to any project: unlikely to be taken already
GATE_STAGES = (INIT_GATE_STAGE, GATE_STAGE)


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

    def dvc_own_j(self) -> float | None:
        """DVC's own CPU-seconds at the per-thread TDP the stage records charged, where one names a TDP."""
        rates = [r.hardware.cpu_tdp_w / r.hardware.cpu_count for r in self.records.values() if r.hardware.cpu_tdp_w]
        return self.dvc_own_cpu_s * rates[0] if rates and self.dvc_own_cpu_s is not None else None


def gate_stage(dvc_yaml: Path, stages: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The gate stage and its name among dvc.yaml's `stages`: `carbon_gate` when `carbon-budget init` added one,
    else a stage named `gate`."""
    for name in GATE_STAGES:
        if isinstance(stages.get(name), dict):
            return name, stages[name]
    expected = " or ".join(repr(name) for name in GATE_STAGES)
    raise CarbonBudgetError(f"{dvc_yaml} has no gate stage ({expected}; `carbon-budget init` adds one)")


def budgeted_stages(dvc_yaml: Path, params: dict[str, Any]) -> list[str]:
    """Stages whose records the gate accounts for, in dvc.yaml order: those the gate stage depends on, then those
    `foreach` makes from `params` that write a record (a distilled student per entry, say)."""
    stages = read_stages(dvc_yaml)
    name, gate = gate_stage(dvc_yaml, stages)
    prefix = layout.RECORDS_DIR.as_posix() + "/"
    deps = [entry_path(d) for d in gate.get("deps") or []]
    names = [d[len(prefix) : -len(".json")] for d in deps if d.startswith(prefix) and d.endswith(".json")]
    if not names:
        raise CarbonBudgetError(f"the gate stage in {dvc_yaml} depends on no emission record under {prefix}")
    generated = generated_recorded_stages(stages, params)
    return [*names, *(stage for stage in generated if stage not in names and stage != name)]


def _stale_reasons(record: EmissionRecord, params: dict[str, Any], root: Path, lock: Lock | None) -> list[str]:
    reasons = []
    if lock is not None:
        reasons += lock.changed_inputs(record.stage, root)
        reasons += lock.disowned_outputs(record.stage, root, layout.record_path(record.stage), record.outputs)
    for section, used in record.params.items():
        if section_value(params, section) != used:
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


def gather(gate: GateParams, params: dict[str, Any], root: Path) -> Evidence:
    """Every record the gate accounts for, checked, and the deployed model's figures (from DEPLOY_METRICS) that
    the size, accuracy and footprint budgets need; what is missing or doubtful becomes a problem, never a pass."""
    budget = gate.budget
    problems: list[str] = []
    records: dict[str, EmissionRecord] = {}
    stale: dict[str, list[str]] = {}  # stage -> why its record is stale
    try:
        lock: Lock | None = load_lock(root)
    except RecordError as exc:
        problems.append(str(exc))
        lock = None
    for stage in budgeted_stages(root / "dvc.yaml", params):
        path = layout.record_path(stage)
        try:
            record = load_record(root / path)
        except RecordError as exc:
            problems.append(str(exc))
            continue
        problems.extend(vouch(stage, record))
        reasons = _stale_reasons(record, params, root, lock)
        problems.extend(f"{path}: stale record, {reason} (rerun `dvc repro {stage}`)" for reason in reasons)
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
    itself = _itself(root)
    if itself is not None:
        records[layout.ITSELF] = itself
        problems.extend(f"{layout.ITSELF_RECORD}: cannot vouch for the tool's own cost: {d}" for d in itself.doubts())
    plain = {n: r.model_dump(mode="json") for n, r in records.items()}  # the payback finds its stages by name
    payback = distillation_payback(plain, document) if document else None
    inference = deployed.get("inference") if isinstance(deployed, dict) else None
    measured = footprint(plain, inference, gate.sci, gate.usage.predictions)
    return Evidence(
        records, problems, size_mb, parameters, accuracy, deploy_path, payback, measured, dvc_own_cpu_seconds()
    )


def _itself(root: Path) -> EmissionRecord | None:
    """The tool's own cost of the latest execution it published on this machine (the worker's warm-up, MLflow
    publishing, pictures, the model), known when this gate decides, so counted in its total; None before any
    (a fresh clone) or when that local state is unreadable: it is the tool's news, not a stage's evidence."""
    try:
        return load_record(root / layout.ITSELF_RECORD)
    except RecordError:
        return None


def judge(gate: GateParams, params: dict[str, Any], root: Path) -> tuple[Verdict, Evidence]:
    """The verdict on the project at `root`; `params` is params.yaml as plain data, as the records keep it, and
    `gate` its sections the gate reads (the band measured figures move in is `report.noise_pct`)."""
    evidence = gather(gate, params, root)
    accuracy = float(evidence.accuracy) if isinstance(evidence.accuracy, int | float) else None
    verdict = check(
        gate.budget,
        evidence.records,
        evidence.model_size_mb,
        accuracy,
        evidence.problems,
        gate.report.noise_pct,
        evidence.footprint,
    )
    return verdict, evidence


def judge_file(params_file: Path, root: Path) -> tuple[Verdict, Evidence]:
    """`carbon-budget gate` and `report`: only the sections the gate reads are validated here, so a project's
    own keys are never judged (its stages validate them)."""
    raw = read_params_file(params_file)
    return judge(gate_params(raw, str(params_file)), raw, root)


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


def text_table(title: str, header: list[str], rows: list[list[str]], right: set[int]) -> str:
    """A boxed plain-text table, the look `dvc repro` output and CI logs show well. Written here rather than
    with a table library: the gate answers in a fraction of a second, and importing one took a sixth of that."""
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str], bar: str) -> str:
        padded = (
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )
        return bar + bar.join(f" {cell} " for cell in padded) + bar

    def rule(left: str, fill: str, middle: str, end: str) -> str:
        return left + middle.join(fill * (w + 2) for w in widths) + end

    return "\n".join(
        [
            title,
            rule("┏", "━", "┳", "┓"),
            line(header, "┃"),
            rule("┡", "━", "╇", "┩"),
            *(line(cells, "│") for cells in rows),
            rule("└", "─", "┴", "┘"),
        ]
    )


def render(verdict: Verdict, evidence: Evidence | None = None) -> str:
    """The table people read in the terminal and in `dvc repro` output, then what the evidence adds: the
    distillation payback, the SCI scores and lifetime, the tool's own line and DVC's own share."""
    payback = evidence.payback if evidence else None
    itself = evidence.records.get(layout.ITSELF) if evidence else None
    rows = [
        [
            f"{line.name} ({line.key})",
            f"{line.limit:.4g} {line.unit}".rstrip(),
            f"{line.measured:.4g} {line.unit}".rstrip(),
            f"{line.headroom:+.3g}",
            line.method or "-",
            ("pass" if line.passed else "FAIL") + (" ~noise" if line.within_noise else ""),
        ]
        for line in verdict.lines
    ]
    header = ["budget", "limit", "measured", "headroom", "how", "verdict"]
    out = [text_table("carbon budget", header, rows, right={1, 2, 3})]
    flapping = [line for line in verdict.lines if line.within_noise]
    if flapping:
        out.append(
            f"~noise: the limit lies within ±{flapping[0].noise_pct:g} % of the figure, the band the same commit's"
            " figure moves in from run to run (params.yaml report.noise_pct): such a line can flip on a rerun"
        )
    if payback is not None:
        out.append(describe(payback))
    out.extend(describe_footprint(evidence.footprint) if evidence else [])
    if itself is not None:
        out.append(
            f"{layout.ITSELF}: {itself.energy_kwh * 1000:.4g} Wh, {itself.co2_kg * 1000:.4g} g CO2"
            f" ({itself.tags.get('covers', 'the tool')}, for the latest execution it published on this machine;"
            " counted in the totals above)"
        )
    if evidence is not None and evidence.dvc_own_cpu_s is not None:
        joules = evidence.dvc_own_j()
        out.append(
            f"dvc itself: {evidence.dvc_own_cpu_s:.2f} CPU-s so far in this run"
            + (f" (~{joules:.3g} J at the records' CPU rate)" if joules is not None else "")
            + "; DVC's own work, in no stage's record and not counted in the totals"
        )
    out.extend(f"FAIL {problem}" for problem in verdict.problems)
    out.append("gate: " + ("PASSED" if verdict.passed else "FAILED"))
    return "\n".join(out) + "\n"


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
