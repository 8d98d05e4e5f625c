"""Show the gate's verdict: the table people read in the terminal and in `dvc repro` output, and the rows DVC
plots. The evidence is gathered and judged in `evidence.py`; this module only shows it.
"""

from __future__ import annotations

from typing import Any

from carbon_budget import layout
from carbon_budget.gate.budgets import Verdict
from carbon_budget.gate.evidence import Evidence
from carbon_budget.gate.footprint import describe as describe_footprint
from carbon_budget.gate.payback import describe
from carbon_budget.gate.shifting import describe_saving


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
    distillation payback, the SCI scores and lifetime, the tool's own line, DVC's own share, what a carbon-aware
    wait saved, and a cleaner window a CO2 budget exceeded now would have held in."""
    payback = evidence.payback if evidence else None
    itself = evidence.records.get(layout.ITSELF) if evidence else None
    rows = [
        [
            f"{line.name} ({line.key})",
            f"{line.limit:.4g} {line.unit}".rstrip(),
            f"{line.measured:.4g} {line.unit}".rstrip() if line.complete else "–",
            f"{line.headroom:+.3g}" if line.complete else "–",
            line.method or "-",
            (("pass" if line.passed else "FAIL") + (" ~noise" if line.within_noise else ""))
            if line.complete
            else "– (unknown)",
        ]
        for line in verdict.lines
    ]
    header = ["budget", "limit", "measured", "headroom", "how", "verdict"]
    out = [text_table("carbon budget", header, rows, right={1, 2, 3})]
    flapping = [line for line in verdict.lines if line.within_noise]
    if flapping:
        out.append(
            f"~noise: the limit lies within ±{flapping[0].noise_pct:g} % of the figure, the band the same commit's"
            f" figure moves in from run to run ({flapping[0].params_file} report.noise_pct): such a line can flip on a"
            " rerun"
        )
    if payback is not None:
        out.append(describe(payback))
    out.extend(describe_footprint(evidence.footprint) if evidence else [])
    if itself is not None:
        out.append(
            f"{layout.ITSELF}: {itself.energy_kwh * 1000:.4g} Wh, {itself.co2_kg * 1000:.4g} g CO2"
            f" ({itself.tags.get('covers', 'the tool')}), counted in the totals above because the tool's own work is"
            " part of what the pipeline costs; these are the previous execution's figures (the latest this machine"
            " published), since this execution's publishing runs after its verdict"
        )
    if evidence is not None and evidence.exempt:
        out.append(
            "not measured, exempt by name (budget.exempt): "
            + "; ".join(f"{stage} ({reason})" for stage, reason in evidence.exempt.items())
        )
    if evidence is not None and evidence.dvc_own_cpu_s is not None:
        joules = evidence.dvc_own_j()
        out.append(
            f"dvc itself: {evidence.dvc_own_cpu_s:.2f} CPU-s so far in this run"
            + (f" (~{joules:.3g} J at the records' CPU rate)" if joules is not None else "")
            + "; DVC's own work, in no stage's record and not counted in the totals"
        )
    if evidence is not None and evidence.carbon_aware is not None:
        out.append(describe_saving(evidence.carbon_aware))
    out.extend(f"FAIL {problem}" for problem in verdict.problems)
    out.extend(f"hint: {advice}" for advice in verdict.advice)
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
