"""The pull-request answer: what this change costs against its base, and whether it stays within budget.

`compare` is a pure function over two `Side`s (`sides.py`: each what its own gate judges) and the gate's verdict;
`markdown.render_markdown` turns its result into the comment people read. What a change loosens (a budget raised,
a stage exempted or no longer counted, a setting every figure is computed with) is named in the verdict: relaxing
your own budget must be visible in review.
"""

from __future__ import annotations

from typing import Any

from carbon_budget import layout
from carbon_budget.config import ReportParams, flatten
from carbon_budget.gate.budgets import Verdict
from carbon_budget.gate.footprint import describe as describe_footprint
from carbon_budget.gate.payback import distillation_payback
from carbon_budget.records.fingerprint import unlike
from carbon_budget.records.record import measurement_of
from carbon_budget.report.noise import NOT_COMPARED, Noise, judge
from carbon_budget.report.sides import SCI_FIGURES, Side

# Budgets where a smaller number is looser (a floor); every other budget is a ceiling, looser when larger.
_HIGHER_IS_STRICTER = ("min_accuracy",)
_EXEMPT = "budget.exempt."  # budget.exempt.STAGE: why a stage is not measured; each one is out of every total
# settings every figure is computed with (power model, grid, embodied share, expected use): any change rescales
# the figures the budgets judge, so it is called out beside a raised budget
SCALING_SECTIONS = ("carbon", "sci", "usage")


def _delta(current: float | None, base: float | None) -> dict[str, Any]:
    if current is None or base is None:
        return {"current": current, "base": base, "delta": None, "delta_pct": None}
    pct = (current - base) / base * 100 if base else None
    return {"current": current, "base": base, "delta": current - base, "delta_pct": pct}


def budget_changes(current: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    """Every budget.* value added, removed, raised or lowered; `loosened` marks the ones that relax a limit."""
    now = flatten(current.get("budget") or {}, "budget")
    before = flatten(base.get("budget") or {}, "budget")
    changes = []
    for key in sorted(set(now) | set(before)):
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        if key.startswith(_EXEMPT):  # a new exemption takes a stage out of the total; a reworded reason does not
            kind = "added" if old is None else "removed" if new is None else "changed"
            loosened = kind == "added"
        elif new is None and old is not None:
            kind, loosened = "removed", True
        elif old is None:
            kind, loosened = "added", False
        elif isinstance(old, int | float) and isinstance(new, int | float):
            kind = "raised" if new > old else "lowered"
            loosened = (kind == "raised") != key.endswith(_HIGHER_IS_STRICTER)
        else:
            kind, loosened = "changed", True
        changes.append({"key": key, "change": kind, "base": old, "current": new, "loosened": loosened})
    return changes


def params_changes(current: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    """Like `dvc params diff`: every non-budget key whose value differs."""
    now, before = flatten(current), flatten(base)
    return [
        {"key": key, "base": before.get(key), "current": now.get(key)}
        for key in sorted(set(now) | set(before))
        if not key.startswith("budget.") and before.get(key) != now.get(key)
    ]


def loosenings(current: Side, base: Side) -> list[dict[str, Any]]:
    """What this change relaxes, each by name: a budget raised or removed, a stage exempted, a stage the base's
    gate counted that this revision's does not, and any change to a setting every figure is computed with."""
    found = [
        {**c, "why": "a stage exempted from the budget" if c["key"].startswith(_EXEMPT) else "a budget relaxed"}
        for c in budget_changes(current.params, base.params)
        if c["loosened"]
    ]
    found += [
        {
            "key": stage,
            "change": "no longer counted",
            "base": record.get("energy_kwh"),
            "current": None,
            "why": "the base's gate counted this stage; this revision's total leaves it out",
        }
        for stage, record in base.records.items()
        if stage not in current.records and stage != layout.ITSELF  # the tool's own line is local state
    ]
    found += [
        {**c, "change": "changed", "why": "every figure is computed with it: base and head are not scaled alike"}
        for c in params_changes(current.params, base.params)
        if c["key"].split(".")[0] in SCALING_SECTIONS
    ]
    return found


FIGURES = (
    "energy_kwh",
    "co2_kg",
    "duration_s",
    "model_size_mb",
    "parameters",
    "test_accuracy",
    "accuracy_per_kwh",
    "energy_kwh_per_1k_predictions",
    "co2_kg_per_1k_predictions",
    *SCI_FIGURES,
)
# figures measured on this machine's power model besides the stages' own: compared only between records alike
MEASURED_TOTALS = ("accuracy_per_kwh", "energy_kwh_per_1k_predictions", "co2_kg_per_1k_predictions", *SCI_FIGURES)
BUDGET_OF = {
    "energy_kwh": "energy_kwh",
    "co2_kg": "co2_kg",
    "model_size_mb": "model_size_mb",
    "test_accuracy": "min_accuracy",
    **{name: name for name in SCI_FIGURES},
}


# figures that depend on the machine's power model (compared only between records measured alike), and work
# figures that do not (compared in every case)
MEASURED_FIGURES = ("duration_s", "energy_kwh", "co2_kg")
WORK_FIGURES = ("cpu_s", "epochs_run")


def _stage_entry(
    name: str, record: dict[str, Any] | None, before: dict[str, Any] | None, noise: Noise
) -> dict[str, Any]:
    """One stage's row; `record` None for a stage the base counted and this revision does not (`counted: false`)."""
    entry: dict[str, Any] = {"stage": name}
    if record is None:
        assert before is not None
        entry |= {"measurement": _measurement(before), "counted": False}
        return entry | {key: _delta(None, before.get(key)) | NOT_COMPARED for key in MEASURED_FIGURES}
    differs = unlike(record, before) if before and "hardware" in record and "hardware" in before else None
    entry["measurement"] = _measurement(record)
    if before is not None and record.get("record_id") and record.get("record_id") == before.get("record_id"):
        entry["rerun"] = False  # DVC did not rerun it: this is the base's own record
    for key in MEASURED_FIGURES:
        entry[key] = _delta(record.get(key), before.get(key) if before else None)
        entry[key].update(NOT_COMPARED if differs else judge(entry[key]["delta_pct"], noise.band(f"{name}.{key}")))
    for key in WORK_FIGURES:
        mine, theirs = (r.get("extra_metrics", {}).get(key) if r else None for r in (record, before))
        if mine is not None:
            entry[key] = _delta(mine, theirs)
            entry[key].update(judge(entry[key]["delta_pct"], noise.band(f"{name}.{key}")))
    if differs:
        entry["not_compared"] = differs
    return entry


def compare(
    current: Side,
    base: Side | None,
    verdict: Verdict,
    base_commit: str | None = None,
    noise: Noise | None = None,
) -> dict[str, Any]:
    """The whole report as plain data: the JSON output, and what the markdown is drawn from."""
    noise = noise or Noise.default(ReportParams().noise_pct)
    base_records = base.records if base else {}
    budgets = current.params.get("budget") or {}
    loosened = loosenings(current, base) if base else []
    uncounted = [c["key"] for c in loosened if c["change"] == "no longer counted"]
    names = [*current.records, *uncounted]
    stages = [_stage_entry(n, current.records.get(n), base_records.get(n), noise) for n in names]
    unlike_stages = [s["stage"] for s in stages if "not_compared" in s]
    scored = current.footprint
    totals = {}
    for name in FIGURES:
        entry = _delta(current.figure(name), base.figure(name) if base else None)
        measured = name in (*MEASURED_FIGURES, *MEASURED_TOTALS)
        if measured and (unlike_stages or uncounted):
            entry.update(NOT_COMPARED)
            reasons = []
            if unlike_stages:
                reasons.append(f"stages measured differently from the base: {', '.join(unlike_stages)}")
            if uncounted:  # a total over fewer stages is no saving
                reasons.append(f"stages the base counted and this revision does not: {', '.join(uncounted)}")
            entry["not_compared"] = "; ".join(reasons)
        else:  # a model's size, parameters and accuracy are the work itself: no power model, no band by default
            band = noise.band(f"total.{name}") if measured else noise.by_figure.get(f"total.{name}", 0.0)
            entry.update(judge(entry["delta_pct"], band))
        if name in BUDGET_OF and isinstance(budgets.get(BUDGET_OF[name]), int | float):
            entry["budget"] = budgets[BUDGET_OF[name]]
        totals[name] = entry
    return {
        "noise": {"source": noise.source, "default_pct": noise.default_pct},
        "verdict": {
            "passed": verdict.passed,
            "heading": "within budget" if verdict.passed else verdict.heading(),
            "failures": verdict.failures(),
            "loosened": bool(loosened),
            # a cleaner window a CO2 budget exceeded now would have held in, when there is one
            **({"advice": list(verdict.advice)} if verdict.advice else {}),
        },
        "loosened": loosened,
        "base": None
        if base is None
        else {
            "ref": base.label,
            "commit": base_commit,
            "has_records": bool(base.records),
            "unjudged": base.unjudged,
        },
        "stages": stages,
        "totals": totals,
        "measurement": _measurement_of_all(current.records),
        "budget_changes": budget_changes(current.params, base.params) if base else [],
        "params_changes": params_changes(current.params, base.params) if base else [],
        "distillation": distillation_payback(current.records, current.export),
        "carbon_aware": {"current": current.carbon_aware, "base": base.carbon_aware if base else None},
        "cleaner_window": current.cleaner_window,
        "footprint": describe_footprint(scored),
        **scored.as_dict(),
    }


def _measurement(record: dict[str, Any]) -> str:
    if "methods" not in record and isinstance(record.get("measurement"), str):
        return str(record["measurement"])  # a line the gate summarised (the tool's own), kept as it says
    summary = measurement_of(record)
    return "unknown" if summary == "none" else summary


def _measurement_of_all(records: dict[str, dict[str, Any]]) -> str:
    kinds = {_measurement(r) for r in records.values()}
    return kinds.pop() if len(kinds) == 1 else "mixed"
