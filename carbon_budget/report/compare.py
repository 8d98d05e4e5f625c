"""The pull-request answer: what this change costs against its base, and whether it stays within budget.

`compare` is a pure function over two `Side`s (the work tree and a git ref, read the same way) and the
gate's verdict; `render_markdown` turns its result into the comment people read. Budget changes get lines of
their own: raising your own budget must be visible in review.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from carbon_budget import layout
from carbon_budget.config import ReportParams, SciParams, UsageParams, parse_section
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.files import parse_yaml
from carbon_budget.gate.budgets import Verdict
from carbon_budget.gate.footprint import Footprint, footprint
from carbon_budget.gate.footprint import describe as describe_footprint
from carbon_budget.gate.payback import describe, distillation_payback
from carbon_budget.records.dvcyaml import DVC_FILE, generated_recorded_stages
from carbon_budget.records.record import measurement_of
from carbon_budget.report.noise import NOT_COMPARED, Noise, judge, unlike

Reader = Callable[[str], str | None]
# Budgets where a smaller number is looser (a floor); every other budget is a ceiling, looser when larger.
_HIGHER_IS_STRICTER = ("min_accuracy",)


# the report's SCI figures (g CO2-eq per functional unit), by the footprint's score they read
SCI_FIGURES = {"sci_g_per_run": "training", "sci_g_per_1k_predictions": "inference"}


@dataclass(frozen=True)
class Side:
    """What one revision says: its params, each stage's record, and the model's figures."""

    label: str
    params: dict[str, Any]
    records: dict[str, dict[str, Any]]
    export: dict[str, Any] = field(default_factory=dict)

    def total(self, key: str) -> float | None:
        values = [r.get(key) for r in self.records.values()]
        numbers = [v for v in values if isinstance(v, int | float)]
        return sum(numbers) if numbers else None

    def figure(self, name: str) -> float | None:
        value = {
            "energy_kwh": self.total("energy_kwh"),
            "co2_kg": self.total("co2_kg"),
            "duration_s": self.total("duration_s"),
            "model_size_mb": self.export.get("model_size_mb"),
            "parameters": self.export.get("parameters"),
            "test_accuracy": self.accuracy(),
            "energy_kwh_per_1k_predictions": self.inference("energy_per_1k_predictions_kwh"),
            "co2_kg_per_1k_predictions": _scaled(self.inference("co2_per_1k_predictions_g"), 1e-3),
        }.get(name)
        if name in SCI_FIGURES:
            score = getattr(self.footprint, SCI_FIGURES[name])
            value = score.sci_g if score is not None else None
        if name == "accuracy_per_kwh":
            accuracy, energy = self.figure("test_accuracy"), self.figure("energy_kwh")
            value = accuracy / energy if accuracy is not None and energy else None
        return float(value) if isinstance(value, int | float) else None

    @cached_property
    def footprint(self) -> Footprint:
        """This revision's SCI scores and lifetime, from its own records, export metrics and params."""
        source = f"params.yaml at {self.label}"
        return footprint(
            self.records,
            (self.export.get("deploy") or {}).get("inference"),
            parse_section(self.params, "sci", SciParams, source),
            parse_section(self.params, "usage", UsageParams, source).predictions,
        )

    def inference(self, key: str) -> Any:
        """A figure of the deployed model's measured energy per prediction (export's `deploy.inference`)."""
        return ((self.export.get("deploy") or {}).get("inference") or {}).get(key)

    def accuracy(self) -> Any:
        """The accuracy of the model that ships: its deployed artifact's own, as the gate judges it."""
        return (self.export.get("deploy") or {}).get("accuracy")


def _scaled(value: Any, factor: float) -> Any:
    return value * factor if isinstance(value, int | float) else None


def work_tree_reader(root: Path) -> Reader:
    def read(path: str) -> str | None:
        try:
            return (root / path).read_text(encoding="utf-8")
        except OSError:
            return None

    return read


def git_reader(root: Path, ref: str) -> tuple[Reader, str]:
    """Read files as committed at `ref`; raises CarbonBudgetError when git does not know the ref."""
    resolved = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=root, capture_output=True, text=True
    )
    if resolved.returncode != 0:
        raise CarbonBudgetError(f"git does not know the base {ref!r} (fetch it first, e.g. `git fetch origin main`)")
    commit = resolved.stdout.strip()

    def read(path: str) -> str | None:
        shown = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=root, capture_output=True, text=True)
        return shown.stdout if shown.returncode == 0 else None

    return read, commit


def _json(read: Reader, path: str) -> dict[str, Any]:
    text = read(path)
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _yaml(read: Reader, path: str) -> dict[str, Any]:
    text = read(path)
    try:
        value = parse_yaml(text) if text else {}
    except yaml.YAMLError:
        return {}
    return value if isinstance(value, dict) else {}


def load_side(label: str, read: Reader, stages: list[str]) -> Side:
    """One revision: `stages` (the gate's), and the stages `foreach` makes from that revision's own params."""
    params = _yaml(read, "params.yaml")
    declared = _yaml(read, DVC_FILE.as_posix()).get("stages")
    try:
        generated = generated_recorded_stages(declared if isinstance(declared, dict) else {}, params)
    except CarbonBudgetError:
        generated = []  # a base whose dvc.yaml this version cannot expand: its gate's own stages still compare
    stages = [*stages, *(s for s in generated if s not in stages)]
    records = {s: r for s in stages if (r := _json(read, layout.record_path(s).as_posix()))}
    # the tool's own line, as the gate counted it: the report's totals are the gate's
    itself = (_json(read, layout.GATE_METRICS.as_posix()).get("stages") or {}).get(layout.ITSELF)
    if isinstance(itself, dict):
        records[layout.ITSELF] = itself
    return Side(label, params, records, _json(read, layout.DEPLOY_METRICS.as_posix()))


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value
    return out


def _delta(current: float | None, base: float | None) -> dict[str, Any]:
    if current is None or base is None:
        return {"current": current, "base": base, "delta": None, "delta_pct": None}
    pct = (current - base) / base * 100 if base else None
    return {"current": current, "base": base, "delta": current - base, "delta_pct": pct}


def budget_changes(current: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    """Every budget.* value added, removed, raised or lowered; `loosened` marks the ones that relax a limit."""
    now = _flat("budget", current.get("budget") or {}, {})
    before = _flat("budget", base.get("budget") or {}, {})
    changes = []
    for key in sorted(set(now) | set(before)):
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        if new is None and old is not None:
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
    now, before = _flat("", current, {}), _flat("", base, {})
    return [
        {"key": key, "base": before.get(key), "current": now.get(key)}
        for key in sorted(set(now) | set(before))
        if not key.startswith("budget.") and before.get(key) != now.get(key)
    ]


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


def _stage_entry(name: str, record: dict[str, Any], before: dict[str, Any] | None, noise: Noise) -> dict[str, Any]:
    differs = unlike(record, before) if before and "hardware" in record and "hardware" in before else None
    entry: dict[str, Any] = {"stage": name, "measurement": _measurement(record)}
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
    stages = [_stage_entry(name, record, base_records.get(name), noise) for name, record in current.records.items()]
    unlike_stages = [s["stage"] for s in stages if "not_compared" in s]
    scored = current.footprint
    totals = {}
    for name in FIGURES:
        entry = _delta(current.figure(name), base.figure(name) if base else None)
        measured = name in (*MEASURED_FIGURES, *MEASURED_TOTALS)
        if measured and unlike_stages:
            entry.update(NOT_COMPARED)
            entry["not_compared"] = f"stages measured differently from the base: {', '.join(unlike_stages)}"
        else:  # a model's size, parameters and accuracy are the work itself: no power model, no band by default
            band = noise.band(f"total.{name}") if measured else noise.by_figure.get(f"total.{name}", 0.0)
            entry.update(judge(entry["delta_pct"], band))
        if name in BUDGET_OF and isinstance(budgets.get(BUDGET_OF[name]), int | float):
            entry["budget"] = budgets[BUDGET_OF[name]]
        totals[name] = entry
    return {
        "noise": {"source": noise.source, "default_pct": noise.default_pct},
        "verdict": {"passed": verdict.passed, "failures": verdict.failures()},
        "base": None
        if base is None
        else {
            "ref": base.label,
            "commit": base_commit,
            "has_records": bool(base.records),
        },
        "stages": stages,
        "totals": totals,
        "measurement": _measurement_of_all(current.records),
        "budget_changes": budget_changes(current.params, base.params) if base else [],
        "params_changes": params_changes(current.params, base.params) if base else [],
        "distillation": distillation_payback(current.records, current.export),
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


# ---- readable units -------------------------------------------------------------------------------------


def _readable(value: float | None, units: tuple[tuple[float, float, str], ...]) -> str:
    """The first unit whose threshold the value reaches, as (threshold, factor, unit), largest first."""
    if value is None:
        return "–"
    for threshold, factor, unit in units:
        if abs(value) >= threshold:
            return f"{value * factor:.3g} {unit}"
    return f"{value * units[-1][1]:.3g} {units[-1][2]}"


def energy(kwh: float | None) -> str:
    return _readable(kwh, ((1, 1, "kWh"), (1e-3, 1e3, "Wh"), (0, 1e6, "mWh")))


def mass(kg: float | None) -> str:
    return _readable(kg, ((1, 1, "kg"), (1e-3, 1e3, "g"), (0, 1e6, "mg")))


def size(mb: float | None) -> str:
    return _readable(mb, ((1, 1, "MB"), (0, 1e3, "KB")))


FORMATS: dict[str, Callable[[float | None], str]] = {
    "energy_kwh": energy,
    "co2_kg": mass,
    "model_size_mb": size,
    "duration_s": lambda v: "–" if v is None else f"{v:.2f} s",
    "parameters": lambda v: "–" if v is None else f"{v:,.0f}",
    "test_accuracy": lambda v: "–" if v is None else f"{v:.2%}",
    "accuracy_per_kwh": lambda v: "–" if v is None else f"{v:,.0f} /kWh",
    "energy_kwh_per_1k_predictions": energy,
    "co2_kg_per_1k_predictions": mass,
    **{name: lambda g: mass(None if g is None else g / 1000) for name in SCI_FIGURES},
}
LABELS = {
    "energy_kwh": "energy",
    "co2_kg": "CO2-eq",
    "duration_s": "duration",
    "model_size_mb": "model size",
    "parameters": "parameters",
    "test_accuracy": "test accuracy",
    "accuracy_per_kwh": "accuracy per kWh",
    "energy_kwh_per_1k_predictions": "energy per 1,000 predictions",
    "co2_kg_per_1k_predictions": "CO2-eq per 1,000 predictions",
    "sci_g_per_run": "SCI per training run",
    "sci_g_per_1k_predictions": "SCI per 1,000 predictions",
}


def _change(entry: dict[str, Any], fmt: Callable[[float | None], str]) -> str:
    if entry["delta"] is None:
        return "new" if entry["base"] is None and entry["current"] is not None else "–"
    if fmt is FORMATS["test_accuracy"]:
        return f"{entry['delta'] * 100:+.2f} pp"
    pct = entry["delta_pct"]
    sign = "+" if entry["delta"] >= 0 else "−"
    text = f"{sign}{fmt(abs(entry['delta']))}"
    return text + (f" ({pct:+.1f}%)" if pct is not None and math.isfinite(pct) else "")


def _versus_noise(entry: dict[str, Any]) -> str:
    """How a change reads against its noise band, in a table cell."""
    if entry.get("verdict") in (None, "not compared"):
        return "not compared" if entry.get("not_compared") or entry.get("verdict") else ""
    if entry["significant"]:
        return f"**{entry['verdict']}** (beyond ±{entry['noise_pct']:.1f} %)"
    return f"no significant change (±{entry['noise_pct']:.1f} %)"


def render_markdown(report: dict[str, Any]) -> str:
    verdict = report["verdict"]
    lines = ["<!-- carbon-budget-report -->"]
    if verdict["passed"]:
        lines.append("## ✅ Carbon budget: within budget")
    else:
        lines.append("## ❌ Carbon budget: over budget")
        lines += [f"- {failure}" for failure in verdict["failures"]]
    base = report["base"]
    if base is None:
        lines.append("\n_No base given: figures of this revision only._")
    elif not base["has_records"]:
        lines.append(
            f"\n_Base `{base['ref']}` has no emission records yet (first run of the pipeline there): no comparison._"
        )
    else:
        lines.append(f"\nCompared with base `{base['ref']}` (`{(base['commit'] or '')[:10]}`).")
    raised = [c for c in report["budget_changes"] if c["loosened"]]
    if report["budget_changes"]:
        lines.append("\n### Budget changes")
        for change in report["budget_changes"]:
            mark = "⚠️ " if change["loosened"] else ""
            lines.append(
                f"- {mark}**{change['key']} {change['change']}** {change['base']} → {change['current']} in this change"
            )
        if raised:
            lines.append("\n_This change relaxes its own budget: reviewers, please confirm it is intended._")
    lines.append(f"\n### Totals ({report['measurement']})\n")
    lines.append(f"_Noise band: {report['noise']['source']}._\n")
    lines.append("| figure | this change | base | change | vs noise | budget |")
    lines.append("|---|---:|---:|---:|---|---:|")
    for name, entry in report["totals"].items():
        if entry["current"] is None and entry["base"] is None and "budget" not in entry:
            continue  # a project without a model has no size or accuracy to show
        fmt = FORMATS[name]
        budget = fmt(entry["budget"]) if "budget" in entry else ""
        if name == "test_accuracy" and budget:
            budget = f"≥ {budget}"
        lines.append(
            f"| {LABELS[name]} | {fmt(entry['current'])} | {fmt(entry['base'])} | {_change(entry, fmt)}"
            f" | {_versus_noise(entry) if report['base'] else ''} | {budget} |"
        )
    if report.get("footprint"):
        lines.append("\n### Software Carbon Intensity and lifetime (this change)\n")
        lines += [f"- {line}" for line in report["footprint"]]
        lines.append("\n<sub>SCI = (E × I + M) per R, ISO/IEC 21031; M is an estimate (docs/sci.md).</sub>")
    lines.append("\n### Per stage\n")
    lines.append("| stage | duration | Δ | energy | Δ | energy vs noise | CO2-eq | Δ | how |")
    lines.append("|---|---:|---:|---:|---:|---|---:|---:|---|")
    for stage in report["stages"]:
        cells = []
        for key in ("duration_s", "energy_kwh", "co2_kg"):
            entry, fmt = stage[key], FORMATS[key]
            cells += [fmt(entry["current"]), _change(entry, fmt)]
            if key == "energy_kwh":
                cells.append(_versus_noise(entry) if report["base"] else "")
        how = stage["measurement"] + ("; not rerun (the base's record)" if stage.get("rerun") is False else "")
        lines.append(f"| {stage['stage']} | {' | '.join(cells)} | {how} |")
    unlike_lines = [f"- {s['stage']}: {s['not_compared']}" for s in report["stages"] if s.get("not_compared")]
    if unlike_lines:
        lines.append("\nEnergy and CO2 not compared (measured differently; no regression is claimed for them):")
        lines += unlike_lines
    if report.get("distillation"):
        lines += ["\n### Distillation\n", describe(report["distillation"]) + "."]
    if report["params_changes"]:
        lines.append("\n### Params changed\n")
        lines.append("| key | base | this change |")
        lines.append("|---|---|---|")
        lines += [f"| {c['key']} | {c['base']} | {c['current']} |" for c in report["params_changes"]]
    lines.append(
        "\n<sub>Energy is estimated where no RAPL/NVML sensor exists (CPU load × TDP, RAM rule of thumb);"
        " the `how` column says which.</sub>"
    )
    return "\n".join(lines) + "\n"
