"""Carbon-aware timing as the gate sees it: what a `carbon-budget wait` saved against starting at once, and, when
the CO2 budget is exceeded now, a cleaner window within the next day that the same energy would have fitted in.

Both are news beside the verdict, never part of it: a wait that belongs to another execution, a series that cannot
be had or a provider that is down mean no line, never a failure and never more than the provider's few seconds.

Which wait an execution belongs to: `.carbon-budget/carbon-aware.json` is local state that every wait rewrites, so
the gate counts it only when at least one stage record it counts ran inside the waited command's span (its
`started_at` to its `ended_at`, or to now while it still runs). Stages DVC did not rerun ran at another time and were
not shifted: the saving in grams is charged on the energy of the records inside the span only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.errors import IntensityUnavailable
from carbon_budget.files import read_json
from carbon_budget.intensity.providers import load
from carbon_budget.intensity.series import IntensitySeries, iso, parse_time
from carbon_budget.intensity.wait import SCHEMA
from carbon_budget.intensity.window import Window, best_window, format_duration
from carbon_budget.records.record import EmissionRecord

# how far ahead a cleaner window is looked for: a run that can wait a day can be scheduled, one that cannot must run
WITHIN = timedelta(days=1)
# the wait writes its times to the second, truncated: a stage that ended in the command's last second is inside
_SLACK = timedelta(seconds=1)


def read_outcome(root: Path) -> dict[str, Any] | None:
    """The last wait's outcome (`layout.CARBON_AWARE_FILE`); None when there is none, or it cannot be read or is of
    another schema: no saving is then shown, and nothing fails."""
    try:
        document = read_json(root / layout.CARBON_AWARE_FILE)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and document.get("schema") == SCHEMA else None


def saving(outcome: dict[str, Any] | None, records: dict[str, EmissionRecord], now: datetime) -> dict[str, Any] | None:
    """`carbon_aware` in metrics/gate.json: the wait's figures and the saving against starting at once, in percent
    and in grams for the energy of the records that ran inside the waited command; None when no record did (the
    outcome is another execution's, or its command never ran).

    The saving is charged at the realised intensity (the series over the hours the command ran) when the wait knew
    it, else at the predicted one, and `saving_basis` says which."""
    if outcome is None:
        return None
    try:
        started = parse_time(outcome["started_at"])
        ended = parse_time(outcome["ended_at"]) if outcome.get("ended_at") else now
    except (KeyError, TypeError, ValueError):
        return None
    inside = sorted(name for name, record in records.items() if _ran_within(name, record, started, ended + _SLACK))
    if not inside:
        return None
    energy_kwh = sum(records[name].energy_kwh for name in inside)
    now_g, predicted, realised = (_number(outcome.get(key)) for key in _INTENSITIES)
    charged, basis = (realised, "realised") if realised is not None else (predicted, "predicted")
    return {
        "source": outcome.get("source"),
        "signal": outcome.get("signal"),
        "reason": outcome.get("reason"),
        "status": outcome.get("status"),
        "planned_start": outcome.get("planned_start"),
        "started_at": outcome.get("started_at"),
        "ended_at": outcome.get("ended_at"),
        "now_g_per_kwh": now_g,
        "predicted_g_per_kwh": predicted,
        "realised_g_per_kwh": realised,
        "saving_basis": basis,
        "saving_pct": round((now_g - charged) / now_g * 100, 1) if now_g and charged is not None else None,
        "saving_g": (now_g - charged) * energy_kwh if now_g is not None and charged is not None else None,
        "energy_kwh": energy_kwh,
        "stages": inside,
    }


_INTENSITIES = ("now_g_per_kwh", "predicted_g_per_kwh", "realised_g_per_kwh")


def _ran_within(name: str, record: EmissionRecord, start: datetime, end: datetime) -> bool:
    """A stage's record ran wholly inside [start, end]; the tool's own line is the previous execution's."""
    if name == layout.ITSELF:
        return False
    try:
        return start <= parse_time(record.started_at) and parse_time(record.ended_at) <= end
    except ValueError:
        return False


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def describe_saving(carbon_aware: dict[str, Any]) -> str:
    """The one line under the gate's table."""
    charged = carbon_aware[f"{carbon_aware['saving_basis']}_g_per_kwh"]
    figure = lambda value: "unknown" if value is None else f"{value:.1f} g/kWh"  # noqa: E731
    pct, grams = carbon_aware["saving_pct"], carbon_aware["saving_g"]
    saved = "saving unknown" if pct is None else f"{pct:+.1f} % cleaner"
    if grams is not None:
        saved += f", {grams:.4g} g CO2 saved on {carbon_aware['energy_kwh'] * 1000:.4g} Wh"
    return (
        f"carbon-aware: {', '.join(carbon_aware['stages'])} ran from {carbon_aware['started_at']} at"
        f" {figure(charged)} ({carbon_aware['saving_basis']}) against {figure(carbon_aware['now_g_per_kwh'])} if"
        f" started at once: {saved} ({carbon_aware['signal'] or 'unknown'} intensity; {carbon_aware['source']})"
    )


@dataclass(frozen=True)
class CleanerWindow:
    """A window within the next day in which the run's energy, at the window's mean intensity, fits the CO2
    budget it exceeds now."""

    window: Window
    energy_kwh: float
    budget_co2_kg: float
    signal: str

    @property
    def co2_kg(self) -> float:
        assert self.window.mean_g_per_kwh is not None
        return self.energy_kwh * self.window.mean_g_per_kwh / 1000

    def as_dict(self) -> dict[str, Any]:
        """`cleaner_window` in metrics/gate.json."""
        return {
            "start": iso(self.window.start),
            "end": iso(self.window.end),
            "mean_g_per_kwh": self.window.as_dict()["mean_g_per_kwh"],
            "co2_kg": self.co2_kg,
            "energy_kwh": self.energy_kwh,
            "budget_co2_kg": self.budget_co2_kg,
            "source": self.window.source,
            "signal": self.signal,
        }

    def hint(self) -> str:
        """What the gate's message and the report add to the CO2 failure."""
        duration = format_duration(self.window.end - self.window.start)
        return (
            f"co2 (total) would fit budget.co2_kg in a cleaner window within the next day: starting"
            f" {iso(self.window.start)} ({self.window.mean_g_per_kwh:.1f} g/kWh mean over {duration}), the same"
            f" {self.energy_kwh:.6g} kWh would emit {self.co2_kg:.6g} kg <= {self.budget_co2_kg:.6g} kg"
            f" ({self.signal} intensity; {self.window.source}); e.g. `carbon-budget wait --forecast SOURCE"
            f" --duration {duration} --max-wait 24h -- dvc repro`"
        )


def cleaner_window(
    series: IntensitySeries, energy_kwh: float, duration: timedelta, budget_co2_kg: float, now: datetime
) -> CleanerWindow | None:
    """The cleanest window of `duration` starting within `WITHIN` of `now` in which `energy_kwh` would emit no more
    than `budget_co2_kg`; None when the series has none (it ends too soon, or no window is clean enough)."""
    window = best_window(series, duration, now, latest_start=now + WITHIN)
    if window.mean_g_per_kwh is None or energy_kwh * window.mean_g_per_kwh / 1000 > budget_co2_kg:
        return None
    return CleanerWindow(window, energy_kwh, budget_co2_kg, series.signal)


def find_cleaner_window(
    source: str, root: Path, energy_kwh: float, duration: timedelta, budget_co2_kg: float, now: datetime
) -> CleanerWindow | None:
    """`cleaner_window` on the forecast `source` names (`carbon.intensity_series`: a file, relative to `root`, or a
    provider asked for its latest forecast); None when it cannot be had, within the provider's few seconds."""
    try:
        series = load(source, root, now)
    except IntensityUnavailable:
        return None
    return cleaner_window(series, energy_kwh, duration, budget_co2_kg, now)
