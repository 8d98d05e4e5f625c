"""The pull-request answer: what this change costs against its base, and whether it stays within budget.

`compare` is a pure function over two `Side`s and the gate's verdict; `render_markdown` turns its result into the
comment people read. Each side is what its own gate judges (`judged_side`, `base_side`): the work tree with the
verdict's very figures, and the base with its own stages, params and budgets, so a change cannot look cheaper by
counting less. What a change loosens (a budget raised, a stage exempted or no longer counted, a setting every
figure is computed with) is named in the verdict: relaxing your own budget must be visible in review.
"""

from __future__ import annotations

import json
import math
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.config import ReportParams, SciParams, UsageParams, parse_section, read_params_file
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.gate import evidence as gating
from carbon_budget.gate.budgets import Verdict
from carbon_budget.gate.footprint import Footprint, footprint
from carbon_budget.gate.footprint import describe as describe_footprint
from carbon_budget.gate.payback import describe, distillation_payback
from carbon_budget.records.record import measurement_of
from carbon_budget.report.noise import NOT_COMPARED, Noise, judge, unlike

# Budgets where a smaller number is looser (a floor); every other budget is a ceiling, looser when larger.
_HIGHER_IS_STRICTER = ("min_accuracy",)
_EXEMPT = "budget.exempt."  # budget.exempt.STAGE: why a stage is not measured; each one is out of every total
# settings every figure is computed with (power model, grid, embodied share, expected use): any change rescales
# the figures the budgets judge, so it is called out beside a raised budget
SCALING_SECTIONS = ("carbon", "sci", "usage")


# the report's SCI figures (g CO2-eq per functional unit), by the footprint's score they read
SCI_FIGURES = {"sci_g_per_run": "training", "sci_g_per_1k_predictions": "inference"}


@dataclass(frozen=True)
class Side:
    """What one revision says: its params, each stage's record, and the model's figures."""

    label: str
    params: dict[str, Any]
    records: dict[str, dict[str, Any]]
    export: dict[str, Any] = field(default_factory=dict)
    unjudged: str | None = None  # why this version could not judge the revision (then it has no records)

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
        source = f"the params file at {self.label}"
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


def git_commit(root: Path, ref: str) -> str:
    """The commit `ref` names; raises CarbonBudgetError when git does not know the ref."""
    resolved = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=root, capture_output=True, text=True
    )
    if resolved.returncode != 0:
        raise CarbonBudgetError(f"git does not know the base {ref!r} (fetch it first, e.g. `git fetch origin main`)")
    return resolved.stdout.strip()


def in_project(root: Path, path: Path) -> Path:
    """`path` (the `--params` file) relative to the project root: the same file is then found in any revision's
    tree, the base's included."""
    if not path.is_absolute():
        return path
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        raise CarbonBudgetError(f"{path} is not inside the project at {root}: the base has no such file") from None


@contextmanager
def tree_of(root: Path, commit: str) -> Iterator[Path]:
    """`commit`'s files in a temporary folder, removed afterwards. `git archive` takes no lock and leaves no
    worktree behind in the repository, and the gate needs nothing DVC caches to total a revision's records."""
    with tempfile.TemporaryDirectory(prefix="carbon-budget-base-") as tmp:
        archive = subprocess.Popen(["git", "archive", "--format=tar", commit], cwd=root, stdout=subprocess.PIPE)
        assert archive.stdout is not None
        try:
            with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
                tar.extractall(tmp, filter="data")
        except tarfile.TarError as exc:
            raise CarbonBudgetError(f"cannot read the files of {commit[:10]}: {exc}") from None
        finally:
            archive.stdout.close()
            if archive.wait() != 0:
                raise CarbonBudgetError(f"`git archive {commit[:10]}` failed (exit {archive.returncode})")
        yield Path(tmp)


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def judged_side(label: str, root: Path, params_file: Path) -> tuple[Side, Verdict]:
    """A revision as its own gate judges it: the stages, params and budgets of the files under `root` (its params
    at `params_file`), one judge call whose records are both the verdict's figures and the report's (the tool's
    own line included)."""
    verdict, evidence = gating.judge_file(params_file, root)
    raw = read_params_file(params_file)
    records = {name: record.model_dump(mode="json") for name, record in evidence.records.items()}
    return Side(label, raw, records, _json(root / layout.DEPLOY_METRICS)), verdict


def base_side(label: str, root: Path, commit: str, params_file: Path) -> Side:
    """The base judged with its own dvc.yaml, params file and budgets, as committed at `commit`: its total is its
    own gate's. Its tool's own line is local state, never committed: the one its gate counted (`metrics/gate.json`)
    stands in. A base this version cannot judge (no gate stage yet, params it rejects) is compared with nothing,
    and says why."""
    with tree_of(root, commit) as tree:
        try:
            side, _ = judged_side(label, tree, tree / params_file)
        except CarbonBudgetError as exc:
            try:
                params = read_params_file(tree / params_file, missing_ok=True)
            except CarbonBudgetError:
                params = {}
            return Side(label, params, {}, unjudged=str(exc))
        itself = (_json(tree / layout.GATE_METRICS).get("stages") or {}).get(layout.ITSELF)
    if isinstance(itself, dict) and layout.ITSELF not in side.records:
        return replace(side, records={**side.records, layout.ITSELF: itself})
    return side


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
    now, before = _flat("", current, {}), _flat("", base, {})
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


def _loosening(change: dict[str, Any]) -> str:
    """One line of the verdict's list: what loosened, by name, from what to what, and why it counts."""
    if change["change"] == "no longer counted":
        return f"**{change['key']}** no longer counted: {energy(change['base'])} at base ({change['why']})"
    return f"**{change['key']} {change['change']}** {change['base']} → {change['current']} ({change['why']})"


def render_markdown(report: dict[str, Any]) -> str:
    verdict, loosened = report["verdict"], report["loosened"]
    lines = ["<!-- carbon-budget-report -->"]
    if not verdict["passed"]:
        lines.append(f"## ❌ {verdict['heading'][0].upper()}{verdict['heading'][1:]}")
        lines += [f"- {failure}" for failure in verdict["failures"]]
    elif loosened:  # within the budget this change itself relaxed: never a plain pass
        lines.append("## ⚠️ Carbon budget: within budget, loosened by this change")
    else:
        lines.append("## ✅ Carbon budget: within budget")
    if loosened:
        lines.append("\n**Loosened by this change** (reviewers, please confirm each is intended):")
        lines += [f"- ⚠️ {_loosening(change)}" for change in loosened]
    base = report["base"]
    if base is None:
        lines.append("\n_No base given: figures of this revision only._")
    elif base.get("unjudged"):
        lines.append(
            f"\n_Base `{base['ref']}` could not be judged by this version ({base['unjudged']}): no comparison._"
        )
    elif not base["has_records"]:
        lines.append(
            f"\n_Base `{base['ref']}` has no emission records yet (first run of the pipeline there): no comparison._"
        )
    else:
        lines.append(f"\nCompared with base `{base['ref']}` (`{(base['commit'] or '')[:10]}`).")
    if report["budget_changes"]:
        lines.append("\n### Budget changes")
        for change in report["budget_changes"]:
            mark = "⚠️ " if change["loosened"] else ""
            lines.append(
                f"- {mark}**{change['key']} {change['change']}** {change['base']} → {change['current']} in this change"
            )
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
        if stage.get("counted") is False:
            how = f"**not counted in this revision** (the base's record: {how})"
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
        "\n<sub>Energy is measured where a RAPL/NVML sensor exists and estimated elsewhere (a stage's CPU-seconds ×"
        " the CPU's per-thread TDP, RAM held × W per GB); the `how` column says which.</sub>"
    )
    return "\n".join(lines) + "\n"
