"""What the gate owes each stage of the pipeline: every stage DVC makes of dvc.yaml, generated ones included.

The gate cannot trust its own deps to know the pipeline: stages are added after `carbon-budget init`, or made by
`foreach` over params or `vars`, or by `matrix`. So it reads dvc.yaml as DVC resolves it, and each stage either
writes its emission record (owed and counted, wherever it sits in the pipeline), is exempt by name in params
(`budget.exempt`, so an exemption shows in review), or fails the gate naming it. Files only, and light: the
`carbon_stages` stage runs this on every `dvc repro`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.records.dvcyaml import DVC_FILE, declared_outputs, entry_path, resolved_stages, upstream_stages

GATE_STAGE = "gate"  # a gate stage of one's own, as the reference pipeline has
INIT_GATE_STAGE = "carbon_gate"  # the one `carbon-budget init` adds to any project: unlikely to be taken already
GATE_STAGES = (INIT_GATE_STAGE, GATE_STAGE)


def gate_stage(dvc_yaml: Path, stages: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The gate stage and its name among dvc.yaml's `stages`: `carbon_gate` when `carbon-budget init` added one,
    else a stage named `gate`."""
    for name in GATE_STAGES:
        if isinstance(stages.get(name), dict):
            return name, stages[name]
    expected = " or ".join(repr(name) for name in GATE_STAGES)
    raise CarbonBudgetError(f"{dvc_yaml} has no gate stage ({expected}; `carbon-budget init` adds one)")


@dataclass(frozen=True)
class Accounting:
    """What the gate owes every stage DVC knows: a record for each that writes one (`recorded`), nothing for the
    stages params.yaml exempts by name, and a refusal naming each of the rest (`unmeasured`)."""

    gate: str
    recorded: list[str]
    exempt: dict[str, str]
    unmeasured: list[str]
    # stages DVC runs before the gate (its deps' producers): a record of any other stage may be written after it
    upstream: set[str]
    # budget.exempt names no stage of the pipeline (a typo, or a stage since removed)
    unknown_exempt: list[str] = field(default_factory=list)
    # every stage's name, in dvc.yaml order, the tool's own included (what `carbon_stages` lists for DVC)
    stages: list[str] = field(default_factory=list)


def account(root: Path, exempt: dict[str, str]) -> Accounting:
    """Every stage of dvc.yaml, generated ones included (`foreach` over params or `vars`, `matrix`), sorted into
    what the gate owes it. A stage owes a record when it declares one (its emission record among its outputs) or
    the gate depends on one in its name, wherever it sits in the pipeline: a stage added later cannot slip past
    the budget by not being among the gate's deps."""
    stages = resolved_stages(root)
    name, gate = gate_stage(root / DVC_FILE, stages)
    gate_deps = {entry_path(d) for d in gate.get("deps") or []}
    recorded, unmeasured, exempted = [], [], {}
    for stage, body in stages.items():
        if stage in (name, layout.STAGES_STAGE):  # the tool's own stages: the gate, and the list that reruns it
            continue
        record = layout.record_path(stage).as_posix()
        if record in declared_outputs(body) or record in gate_deps:
            recorded.append(stage)
        elif stage in exempt:
            exempted[stage] = exempt[stage]
        else:
            unmeasured.append(stage)
    return Accounting(
        name,
        recorded,
        exempted,
        unmeasured,
        set(upstream_stages(stages, name)),
        [stage for stage in exempt if stage not in stages],
        list(stages),
    )


def accounting_problems(accounting: Accounting, params_file: str) -> list[str]:
    """A stage measured by nothing, or an exemption of no stage, is named with the one command that fixes it."""
    problems = [
        f"stage {stage} is measured by nothing: it writes no emission record ({layout.record_path(stage)}), so its"
        f" energy would be in no total. Run `carbon-budget init` to measure it with `carbon-budget track`, or"
        f" exempt it by name with the reason in {params_file} (budget.exempt: {{{stage}: why}})"
        for stage in accounting.unmeasured
    ]
    problems += [
        f"{params_file} budget.exempt names stage {stage}, which dvc.yaml does not have: remove it (or fix the name)"
        for stage in accounting.unknown_exempt
    ]
    return problems
