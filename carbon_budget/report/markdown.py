"""The pull-request comment: the report's plain data (`compare.compare`) as the markdown people read."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from carbon_budget.gate.payback import describe
from carbon_budget.report.sides import SCI_FIGURES


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


# the rows of the carbon-aware table: (key in metrics/gate.json's `carbon_aware`, label, how it is shown)
_CARBON_AWARE_ROWS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("started_at", "started", lambda v: "–" if v is None else str(v)),
    ("now_g_per_kwh", "intensity if started at once", lambda v: "–" if v is None else f"{v:.1f} g/kWh"),
    ("predicted_g_per_kwh", "predicted intensity", lambda v: "–" if v is None else f"{v:.1f} g/kWh"),
    ("realised_g_per_kwh", "realised intensity", lambda v: "–" if v is None else f"{v:.1f} g/kWh"),
    ("saving_pct", "saving", lambda v: "–" if v is None else f"{v:.1f} %"),
    ("saving_g", "CO2-eq saved", lambda g: mass(None if g is None else g / 1000)),
    ("energy_kwh", "energy shifted", energy),
    ("signal", "signal", lambda v: "–" if v is None else str(v)),
)


def _carbon_aware(sides: dict[str, Any], with_base: bool) -> list[str]:
    """What the wait each side's stages ran under saved against starting at once; nothing when neither ran under
    one."""
    current, base = sides.get("current"), sides.get("base")
    if current is None and base is None:
        return []
    lines = ["\n### Carbon-aware timing\n", "| figure | this change |" + (" base |" if with_base else "")]
    lines.append("|---|---:|" + ("---:|" if with_base else ""))
    for key, label, fmt in _CARBON_AWARE_ROWS:
        cells = [fmt((side or {}).get(key)) for side in ([current, base] if with_base else [current])]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    for name, side in (("this change", current), ("base", base)):
        if side is not None:
            lines.append(
                f"\n<sub>{name}: {', '.join(side['stages'])} ran under `carbon-budget wait`; saving against starting"
                f" at once, at the {side['saving_basis']} intensity; {side['source']}: {side['reason']}</sub>"
            )
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    verdict, loosened = report["verdict"], report["loosened"]
    lines = ["<!-- carbon-budget-report -->"]
    if not verdict["passed"]:
        lines.append(f"## ❌ {verdict['heading'][0].upper()}{verdict['heading'][1:]}")
        lines += [f"- {failure}" for failure in verdict["failures"]]
        lines += [f"- 🕒 {advice}" for advice in verdict.get("advice", [])]
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
    lines += _carbon_aware(report.get("carbon_aware") or {}, bool(report["base"]))
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
