"""A model's carbon beyond one execution: its Software Carbon Intensity and its lifetime footprint.

SCI (the Green Software Foundation's specification, ISO/IEC 21031:2024) is a rate, not a total:

    SCI = (E x I + M) per R

E is the energy the functional unit R cost, I the location-based grid intensity it was charged at, and M the
share of the machine's embodied emissions the work took: M = TE x (T / EL) x RS, with TE the machine's embodied
emissions, T the time the work held it, EL its expected life and RS the share of it the work reserved. For a
training run T is wall-clock, not a sum of durations: the union of its lines' intervals on each machine a stage ran
on (`reserved_s`), so the tool's own line, which runs beside the stages, is never counted on top of them.

Two functional units: one training run (every stage the gate accounts for, the tool's own line included, so E is
the gate's total) and 1,000 predictions of the deployed model (E, I and T from export's measurement under the
meter). The lifetime footprint adds the training run's CO2 to the CO2 of the predictions `usage.predictions`
expects. Plain arithmetic over plain data (records and metrics/export.json): torch-free, for the gate, the
export stage's model card and the report alike, so every place shows the same figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from carbon_budget.config import PredictionUsage, SciParams
from carbon_budget.records.record import measurement_of

SECONDS_PER_YEAR = 365.25 * 24 * 3600
TRAINING_UNIT = "one training run"
INFERENCE_UNIT = "1,000 predictions"


def embodied_source(sci: SciParams) -> str:
    """Where M's terms came from: params `sci`, whose defaults are published figures (docs/sci.md)."""
    defaults = SciParams()
    given = [f"sci.{key}" for key in SciParams.model_fields if getattr(sci, key) != getattr(defaults, key)]
    return (
        f"estimated: TE {sci.embodied_kg:g} kgCO2e over EL {sci.lifetime_years:g} years, RS {sci.resource_share:g}"
        + (f" (params {', '.join(given)})" if given else "")
        + "; defaults: Cloud Carbon Footprint's commodity rack server (1,000 kgCO2e, 4 years), the whole machine"
    )


@dataclass(frozen=True)
class Sci:
    """One SCI score with its terms, each term's source, and which of them are estimates."""

    functional_unit: str
    functional_unit_source: str  # what one unit declares
    energy_kwh: float  # E, per functional unit
    intensity_g_per_kwh: float  # I
    time_s: float  # T: how long the functional unit held the machine, in machine-seconds
    sci: SciParams  # TE, EL and RS
    energy_source: str
    intensity_source: str
    energy_estimated: bool

    @property
    def operational_g(self) -> float:
        """E x I."""
        return self.energy_kwh * self.intensity_g_per_kwh

    @property
    def embodied_g(self) -> float:
        """M = TE x (T / EL) x RS, in grams."""
        life_s = self.sci.lifetime_years * SECONDS_PER_YEAR
        return self.sci.embodied_kg * 1000 * self.time_s / life_s * self.sci.resource_share

    @property
    def sci_g(self) -> float:
        return self.operational_g + self.embodied_g

    def as_dict(self) -> dict[str, Any]:
        """The terms as metrics/gate.json keeps them: each figure with its unit, each term with its source."""
        estimates = ["embodied"] + (["energy"] if self.energy_estimated else [])
        return {
            "sci_g": self.sci_g,
            "functional_unit": self.functional_unit,
            "energy_kwh": self.energy_kwh,
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "operational_g": self.operational_g,
            "embodied_g": self.embodied_g,
            "embodied": {
                "machine_kg": self.sci.embodied_kg,
                "lifetime_years": self.sci.lifetime_years,
                "resource_share": self.sci.resource_share,
                "time_reserved_s": self.time_s,
            },
            "sources": {
                "energy": self.energy_source,
                "intensity": self.intensity_source,
                "embodied": embodied_source(self.sci),
                "functional_unit": f"declared: {self.functional_unit_source}",
            },
            "estimates": estimates,
        }


def _intensity(co2_g: float, energy_kwh: float, fallback: float) -> float:
    """The intensity a figure was charged at, from its own CO2 and energy, so E x I reproduces its CO2."""
    return co2_g / energy_kwh if energy_kwh > 0 else fallback


def _summed(records: Mapping[str, Mapping[str, Any]], key: str) -> float | None:
    """A figure summed over the records, or None when any record lacks it (a run rebuilt from MLflow history
    may): a score over part of the stages would be wrong, not rough."""
    values = [r.get(key) for r in records.values()]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) if values and len(numbers) == len(values) else None  # summed as the gate sums


def _interval(record: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    """A line's [start, end]; None for a line not placed in time (no timestamps, unreadable ones, or no zone)."""
    started_at, ended_at = record.get("started_at"), record.get("ended_at")
    if not isinstance(started_at, str) or not isinstance(ended_at, str):
        return None
    try:
        start, end = datetime.fromisoformat(started_at), datetime.fromisoformat(ended_at)
    except ValueError:
        return None
    return (start, end) if start.tzinfo and end.tzinfo and start <= end else None


def _union_s(intervals: Iterable[tuple[datetime, datetime]]) -> float:
    """The length of the union of intervals: time covered twice counts once, a gap between them not at all. Kept
    in whole microseconds until the end, so lines that do not overlap add up to exactly their durations' sum."""
    covered, reach = timedelta(0), datetime.min.replace(tzinfo=UTC)
    for start, end in sorted(intervals):
        if end > reach:
            covered += end - max(start, reach)
            reach = end
    return covered.total_seconds()


def _machines(record: Mapping[str, Any]) -> list[int]:
    """The machines a line held, by node rank: node 0 is the machine every line runs on; a stage that ran on
    several (distributed training) names each in `nodes`."""
    nodes = record.get("nodes")
    ranks = {n.get("node_rank") for n in nodes if isinstance(n, Mapping)} if isinstance(nodes, list) else set()
    return sorted({rank for rank in ranks if isinstance(rank, int)} | {0})


def reserved_s(records: Mapping[str, Mapping[str, Any]]) -> float | None:
    """SCI's T for a training run: machine-seconds the lines held, the union of their intervals on each machine.

    Consecutive stages add up, and the tool's own line, which runs beside them, adds only what lies outside them.
    A multi-node stage holds each of its machines for its interval (node 0 waited for them all). A line known only
    by its duration (rebuilt from MLflow history, or a summary line) cannot be placed in time and counts whole, on
    each of its machines. None when a line has neither."""
    held: dict[int, list[tuple[datetime, datetime]]] = {}
    unplaced_s = 0.0
    for record in records.values():
        interval, machines = _interval(record), _machines(record)
        if interval is not None:
            for rank in machines:
                held.setdefault(rank, []).append(interval)
        elif isinstance(duration_s := record.get("duration_s"), int | float):
            unplaced_s += float(duration_s) * len(machines)
        else:
            return None
    return sum(_union_s(intervals) for intervals in held.values()) + unplaced_s


def training_sci(records: Mapping[str, Mapping[str, Any]], sci: SciParams) -> Sci | None:
    """SCI per training run over the records (as plain data); None without records or a figure it needs."""
    energy_kwh, co2_kg = _summed(records, "energy_kwh"), _summed(records, "co2_kg")
    time_s = reserved_s(records)
    if energy_kwh is None or co2_kg is None or time_s is None:
        return None
    co2_g = co2_kg * 1000
    first = next(iter(records.values()))
    sources = sorted({str(r.get("carbon_intensity_source") or "unknown") for r in records.values()})
    return Sci(
        functional_unit=TRAINING_UNIT,
        functional_unit_source="every stage the gate accounts for, executed once",
        energy_kwh=energy_kwh,
        intensity_g_per_kwh=_intensity(co2_g, energy_kwh, float(first.get("carbon_intensity_g_per_kwh") or 0.0)),
        time_s=time_s,
        sci=sci,
        energy_source=f"the records of {len(records)} stage(s): {', '.join(records)}",
        intensity_source="; ".join(sources),
        energy_estimated=any(measurement_of(r) in ("estimated", "mixed") for r in records.values()),
    )


def inference_sci(inference: Mapping[str, Any] | None, sci: SciParams) -> Sci | None:
    """SCI per 1,000 predictions from export's measured `deploy.inference`; None when it holds no measurement."""
    if not isinstance(inference, Mapping):
        return None
    try:
        energy_kwh = float(inference["energy_per_1k_predictions_kwh"])
        co2_g = float(inference["co2_per_1k_predictions_g"])
        time_s = float(inference["measured_seconds"]) / float(inference["measured_predictions"]) * 1000
    except (TypeError, KeyError, ValueError, ZeroDivisionError):
        return None
    method = str(inference.get("method", ""))
    return Sci(
        functional_unit=INFERENCE_UNIT,
        functional_unit_source="the deployed model's predictions on the test split, as export measured them",
        energy_kwh=energy_kwh,
        intensity_g_per_kwh=_intensity(co2_g, energy_kwh, float(inference.get("carbon_intensity_g_per_kwh") or 0)),
        time_s=time_s,
        sci=sci,
        energy_source=method or "metrics/export.json deploy.inference",
        intensity_source=str(inference.get("intensity_source") or "the measuring stage's intensity"),
        energy_estimated="estimated:" in method,
    )


@dataclass(frozen=True)
class Lifetime:
    """Training once plus the expected predictions, in operational CO2 (embodied emissions are SCI's M)."""

    predictions: float
    training_co2_kg: float
    training_energy_kwh: float
    inference_co2_g_per_1k: float
    inference_energy_kwh_per_1k: float

    @property
    def inference_co2_kg(self) -> float:
        return self.inference_co2_g_per_1k * self.predictions / 1000 / 1000

    @property
    def inference_energy_kwh(self) -> float:
        return self.inference_energy_kwh_per_1k * self.predictions / 1000

    @property
    def co2_kg(self) -> float:
        return self.training_co2_kg + self.inference_co2_kg

    @property
    def dominant(self) -> str:
        return "inference" if self.inference_co2_kg > self.training_co2_kg else "training"

    @property
    def break_even_predictions(self) -> float | None:
        """After how many predictions inference has cost as much CO2 as training."""
        return self.training_co2_kg * 1e6 / self.inference_co2_g_per_1k if self.inference_co2_g_per_1k else None

    def as_dict(self, usage: PredictionUsage) -> dict[str, Any]:
        return {
            "predictions": self.predictions,
            "predictions_per_day": usage.per_day,
            "days": usage.days,
            "co2_kg": self.co2_kg,
            "training_co2_kg": self.training_co2_kg,
            "inference_co2_kg": self.inference_co2_kg,
            "energy_kwh": self.training_energy_kwh + self.inference_energy_kwh,
            "training_energy_kwh": self.training_energy_kwh,
            "inference_energy_kwh": self.inference_energy_kwh,
            "dominant": self.dominant,
            "inference_equals_training_after_predictions": self.break_even_predictions,
        }


def lifetime(
    usage: PredictionUsage | None,
    training_co2_kg: float,
    training_energy_kwh: float,
    inference: Mapping[str, Any] | None,
) -> Lifetime | None:
    """The lifetime footprint, or None when params declare no use or export measured no prediction."""
    if usage is None or not isinstance(inference, Mapping):
        return None
    co2, energy = inference.get("co2_per_1k_predictions_g"), inference.get("energy_per_1k_predictions_kwh")
    if not isinstance(co2, int | float) or not isinstance(energy, int | float):
        return None
    return Lifetime(usage.total, training_co2_kg, training_energy_kwh, float(co2), float(energy))


@dataclass(frozen=True)
class Footprint:
    """Both SCI scores and the lifetime footprint of one execution; each is None where its figures are missing."""

    training: Sci | None = None
    inference: Sci | None = None
    lifetime: Lifetime | None = None
    usage: PredictionUsage | None = None

    def as_dict(self) -> dict[str, Any]:
        """metrics/gate.json's `sci` and `lifetime`."""
        return {
            "sci": {
                "training": self.training.as_dict() if self.training else None,
                "inference": self.inference.as_dict() if self.inference else None,
            },
            "lifetime": self.lifetime.as_dict(self.usage) if self.lifetime and self.usage else None,
        }


def footprint(
    records: Mapping[str, Mapping[str, Any]],
    inference: Mapping[str, Any] | None,
    sci: SciParams,
    usage: PredictionUsage | None,
) -> Footprint:
    """The footprint of the records (as plain data) and export's measured `deploy.inference`."""
    training = training_sci(records, sci)
    co2_kg = _summed(records, "co2_kg")
    life = None
    if training is not None and co2_kg is not None:  # the records' own CO2, so it reconciles with the gate's
        life = lifetime(usage, co2_kg, training.energy_kwh, inference)
    return Footprint(training, inference_sci(inference, sci), life, usage)


def describe_sci(score: Sci) -> str:
    """One line: the score and its terms, so a reader can redo the sum."""
    sci = score.sci
    return (
        f"SCI ({score.functional_unit}): {score.sci_g:.4g} g CO2-eq = E {score.energy_kwh:.4g} kWh"
        f" x I {score.intensity_g_per_kwh:.4g} g/kWh ({score.operational_g:.4g} g) + M {score.embodied_g:.4g} g"
        f" ({sci.embodied_kg:g} kgCO2e x {score.time_s:.4g} s / {sci.lifetime_years:g} years x share"
        f" {sci.resource_share:g}; estimated)"
    )


def describe(measured: Footprint) -> list[str]:
    """The lines the gate prints under its table (and the report and the model card reuse)."""
    lines = [describe_sci(score) for score in (measured.training, measured.inference) if score is not None]
    life, usage = measured.lifetime, measured.usage
    if life is not None and usage is not None:
        even = life.break_even_predictions
        lines.append(
            f"lifetime ({usage.per_day:,.0f} predictions a day for {usage.days:g} days): {life.co2_kg:.4g} kg CO2-eq"
            f" = training {life.training_co2_kg:.4g} kg + inference {life.inference_co2_kg:.4g} kg;"
            f" {life.dominant} dominates"
            + (f" (inference equals training after {even:,.0f} predictions)" if even is not None else "")
        )
    return lines
