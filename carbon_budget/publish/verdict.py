"""A gate's decision from start to end: judge the records, show the verdict, publish the execution.

One function for every gate: the reference pipeline's gate stage and `carbon-budget gate` (with `--publish`, the
gate `carbon-budget init` adds to a team's project). So both count their own process in the tool's own line
("carbon-budget itself", see `itself.record_itself`): the judging and handing over is the tool's work, and it is in
no total of the execution it decides. The gate stage measures itself as a stage (a `StageRun`, whose record DVC
tracks); `carbon-budget gate --publish` counts its process's CPU-seconds and resident memory, charged at the rates
its execution's records were charged, since codecarbon's start-up alone would cost more than the gate's work.

Publishing is imported only when a gate publishes: a plain `carbon-budget gate` reads files and answers fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carbon_budget import layout
from carbon_budget.config import GateParams
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.gate.accounting import INIT_GATE_STAGE
from carbon_budget.gate.budgets import Verdict
from carbon_budget.gate.evidence import Evidence, judge, verdict_document
from carbon_budget.gate.render import render

if TYPE_CHECKING:
    from carbon_budget.measure.stage import StageRun
    from carbon_budget.records.record import EmissionRecord


@dataclass(frozen=True)
class Publishing:
    """What a deciding gate publishes with its verdict, and how it measures itself."""

    params: dict[str, Any]  # logged on the execution's parent run
    pictures: list[dict[str, str]] = field(default_factory=list)  # the project's own (see `plots.draw_execution`)
    # this process as a stage, entered around judging and showing; None: counted by its CPU-seconds and memory
    own: StageRun | None = None


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    evidence: Evidence
    document: dict[str, Any]  # metrics/gate.json's content (`verdict_document`)
    table: str  # the verdict as people read it (`render`)
    published: str | None = None  # where MLflow holds the execution's runs
    unpublished: str | None = None  # why it does not (yet): a warning, never a verdict


def decide(
    gate: GateParams,
    params: dict[str, Any],
    root: Path,
    params_file: str,
    show: Callable[[Decision], None],
    publishing: Publishing | None = None,
) -> Decision:
    """Judge the project at `root` (`params`: the params file as plain data, `gate` its sections the gate reads) and
    hand the decision to `show` (the caller prints it and writes its files) before anything is published.

    With `publishing`, this gate decides the execution (`judge(..., deciding=True)`: it counts the newest record of
    the tool's own cost) and then publishes it to MLflow, this process's own cost among the records; MLflow being
    away or this process's cost not being chargeable is `unpublished`, never an error: the verdict stands alone."""
    own = publishing.own if publishing is not None else None
    with own if own is not None else contextlib.nullcontext():
        verdict, evidence = judge(gate, params, root, params_file, deciding=publishing is not None)
        decision = Decision(verdict, evidence, verdict_document(verdict, evidence), render(verdict, evidence))
        show(decision)
    if publishing is None or not evidence.records:
        return decision
    try:
        published = _publish(decision, publishing, params, root, params_file)
    except CarbonBudgetError as exc:
        return dataclasses.replace(decision, unpublished=str(exc))
    return dataclasses.replace(decision, published=published)


def _publish(decision: Decision, publishing: Publishing, params: dict[str, Any], root: Path, params_file: str) -> str:
    from carbon_budget.config import MlflowParams, parse_section
    from carbon_budget.layout import tracking_uri
    from carbon_budget.publish.delivery import publish_execution

    experiment = parse_section(params, "mlflow", MlflowParams, params_file).experiment
    own = publishing.own.record if publishing.own is not None else _process_record(decision.evidence)
    return publish_execution(
        experiment,
        publishing.params,
        decision.document,
        decision.evidence,
        [own] if own is not None else [],
        root,
        publishing.pictures,
        tracking_uri(),
    )


def _process_record(evidence: Evidence) -> EmissionRecord | None:
    """This process's cost so far, from its start (interpreter, imports, judging), as a record of the stage DVC runs
    it as (`carbon_gate` when run by hand): CPU-seconds and resident memory held over its lifetime, charged at the
    rates the judged records were. None when no record holds a rate to charge at: the tool's own line is news, and
    never a reason not to publish the execution (as for the publishing's own cost, `delivery.deliver`)."""
    import time

    from carbon_budget.errors import MeasurementError
    from carbon_budget.measure.cpu import charge_usage, process_started_at, tree_cpu_seconds
    from carbon_budget.measure.memory import tree_rss_gb
    from carbon_budget.measure.stage import usage_record
    from carbon_budget.records.record import timestamp

    likes = sorted(
        (r for name, r in evidence.records.items() if name != layout.ITSELF and r.hardware.cpu_count > 0),
        key=lambda r: r.ended_at,  # the latest last, whose RAM rate, PUE and intensity are charged
    )
    if not likes:
        return None
    started = process_started_at()
    duration_s = time.time() - started
    try:
        reading = charge_usage(tree_cpu_seconds(), tree_rss_gb() * duration_s, duration_s, likes)
    except MeasurementError:
        return None
    return usage_record(
        os.environ.get("DVC_STAGE", "").rsplit(":", 1)[-1] or INIT_GATE_STAGE,
        reading,
        timestamp(started),
        {"charged_from": "process start", "measured": "CPU-seconds and resident memory of the gate's process"},
        {},
    )
