"""A grid's carbon intensity over time: slots of g CO2-eq/kWh, read from any of the formats a team meets.

Each provider publishes its forecast in its own shape and unit (Electricity Maps in g/kWh by the hour, WattTime in
lbs/MWh every 5 minutes, the UK grid by the half hour, the carbon-aware-sdk as a list per location). They all become
one `IntensitySeries` here, detected by content rather than by file name (a downloaded forecast is often saved as
`forecast.json` whatever it holds), so that choosing a window and charging a record are the same arithmetic for all.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from carbon_budget.errors import IntensityUnavailable

LBS_PER_MWH_PER_G_PER_KWH = 2.20462  # 1 g/kWh = 1 kg/MWh = 2.20462 lbs/MWh
CSV_COLUMNS = ("start_utc", "duration_min", "g_per_kwh", "source", "generated_at")
# Average (attributional) intensity says what the grid's mix emits per kWh; marginal says what one more kWh adds.
# They answer different questions, so every figure says which one it used. The carbon-aware-sdk does not say which
# its configured data source gives: "unknown" rather than a guess.
Signal = Literal["average", "marginal", "unknown"]
_EPSILON_S = 1e-6  # float seconds: a gap smaller than this is rounding, not a hole in the series


@dataclass(frozen=True)
class Slot:
    """One stretch of constant intensity, [start, end)."""

    start: datetime
    end: datetime
    g_per_kwh: float


@dataclass(frozen=True)
class IntensitySeries:
    """Intensity slots sorted by time and never overlapping (gaps allowed: a gap is time the series does not know),
    with what a figure taken from them must disclose: provider, zone, signal, when the data was generated, and the
    file or provider spec it came from (`origin`)."""

    slots: tuple[Slot, ...]
    format: str
    provider: str
    zone: str | None
    signal: Signal
    generated_at: datetime | None
    origin: str
    _starts: list[datetime] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.slots:
            raise IntensityUnavailable(f"{self.origin}: no intensity data in it")
        object.__setattr__(self, "_starts", [slot.start for slot in self.slots])  # for bisection

    @property
    def start(self) -> datetime:
        return self.slots[0].start

    @property
    def end(self) -> datetime:
        """The horizon: nothing is known after it."""
        return self.slots[-1].end

    def coverage(self, start: datetime, end: datetime) -> float:
        """The fraction of [start, end) the series knows, 0 to 1 (1 for an instant it knows)."""
        if end <= start:
            return 1.0 if self.at(start) is not None else 0.0
        return self._integral(start, end)[1] / (end - start).total_seconds()

    def at(self, moment: datetime) -> float | None:
        """The intensity at one instant; None outside the series."""
        index = bisect.bisect_right(self._starts, moment) - 1
        if index >= 0 and moment < self.slots[index].end:
            return self.slots[index].g_per_kwh
        return None

    def mean_over(self, start: datetime, end: datetime) -> float | None:
        """The time-weighted mean intensity over [start, end) in g/kWh; None unless the series covers all of it."""
        if end <= start:
            return self.at(start)
        gram_s, covered_s = self._integral(start, end)
        if covered_s < (end - start).total_seconds() - _EPSILON_S:
            return None
        return gram_s / covered_s

    def energy_weighted(self, intervals: Sequence[tuple[datetime, datetime, float]]) -> tuple[float | None, bool]:
        """The intensity a run's energy was spent at: each (start, end, energy_kwh) interval's mean intensity,
        weighted by its energy, so a change of intensity mid-run counts as the energy actually fell on each side.

        Returns (g_per_kwh, covered): the weighted intensity over the intervals the series covers (None when it
        covers none), and whether it covers all of them. With no energy at all, the intervals weigh by time."""
        total_kwh = sum(max(energy_kwh, 0.0) for _, _, energy_kwh in intervals)
        weighted = weight = 0.0
        covered = bool(intervals)
        for start, end, energy_kwh in intervals:
            mean = self.mean_over(start, end)
            if mean is None:
                covered = False
                continue
            share = max(energy_kwh, 0.0) if total_kwh > 0 else max((end - start).total_seconds(), _EPSILON_S)
            weighted += mean * share
            weight += share
        return (weighted / weight if weight > 0 else None), covered

    def describe(self) -> str:
        """One line naming where the figures come from, for a record's `carbon_intensity_source` or a message."""
        parts = [self.format, self.provider]
        if self.zone:
            parts.append(f"zone {self.zone}")
        parts.append(f"{self.signal} intensity")
        if self.generated_at is not None:
            parts.append(f"generated {iso(self.generated_at)}")
        return f"{self.origin} ({', '.join(parts)})"

    def metadata(self) -> dict[str, Any]:
        """The same disclosure as plain JSON values."""
        return {
            "origin": self.origin,
            "format": self.format,
            "provider": self.provider,
            "zone": self.zone,
            "signal": self.signal,
            "generated_at": iso(self.generated_at) if self.generated_at else None,
            "horizon": [iso(self.start), iso(self.end)],
        }

    def _integral(self, start: datetime, end: datetime) -> tuple[float, float]:
        """(g/kWh x seconds, seconds covered) over [start, end)."""
        gram_s = covered_s = 0.0
        index = max(bisect.bisect_right(self._starts, start) - 1, 0)
        for slot in self.slots[index:]:
            if slot.start >= end:
                break
            overlap_s = (min(slot.end, end) - max(slot.start, start)).total_seconds()
            if overlap_s > 0:
                gram_s += slot.g_per_kwh * overlap_s
                covered_s += overlap_s
        return gram_s, covered_s


def parse_time(text: Any) -> datetime:
    """An ISO-8601 time with its zone (`Z` or an offset), as UTC; ValueError for anything else, a naive time
    included: a time without a zone could be anyone's local time."""
    moment = datetime.fromisoformat(str(text).strip())
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (add Z for UTC)")
    return moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """A UTC time as the providers write it, to the second: 2026-12-01T13:00:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_series(path: Path, origin: str | None = None) -> IntensitySeries:
    """A series from a file in any known format; IntensityUnavailable naming the file when it cannot be used."""
    name = origin or str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise IntensityUnavailable(f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_series(text, name)


def parse_series(text: str, origin: str) -> IntensitySeries:
    """A series from a document's text, its format told by its content."""
    stripped = text.lstrip()
    try:
        if stripped.startswith(("{", "[")):
            return _parse_json(json.loads(stripped), origin)
        if stripped.split("\n", 1)[0].strip().startswith("start_utc"):
            return _parse_csv(stripped, origin)
    except IntensityUnavailable:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise IntensityUnavailable(f"{origin}: unreadable intensity data ({type(exc).__name__}: {exc})") from None
    raise IntensityUnavailable(
        f"{origin}: not a known intensity format (a canonical CSV with header {','.join(CSV_COLUMNS)}, or an"
        " Electricity Maps, WattTime, UK grid or carbon-aware-sdk forecast)"
    )


def _parse_json(document: Any, origin: str) -> IntensitySeries:
    if isinstance(document, dict) and isinstance(document.get("forecast"), list):
        return _electricitymaps(document, origin)
    if isinstance(document, list) or (isinstance(document, dict) and "forecastData" in document):
        return _carbon_aware_sdk(document if isinstance(document, list) else [document], origin)
    data = document.get("data") if isinstance(document, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if "point_time" in data[0]:
            return _watttime(document, origin)
        if "intensity" in data[0] and "from" in data[0]:
            return _ukgrid(data, origin)
    raise IntensityUnavailable(f"{origin}: JSON in no known intensity format (or with no data points)")


def _electricitymaps(document: dict[str, Any], origin: str) -> IntensitySeries:
    points = [(parse_time(p["datetime"]), p.get("carbonIntensity")) for p in document["forecast"]]
    return IntensitySeries(
        _slots_from_points(points, step_s=None, origin=origin),
        format="Electricity Maps v3 forecast",
        provider="electricitymaps",
        zone=document.get("zone"),
        signal="average",
        generated_at=_optional_time(document.get("updatedAt")),
        origin=origin,
    )


def _watttime(document: dict[str, Any], origin: str) -> IntensitySeries:
    meta = document.get("meta") or {}
    units = str(meta.get("units") or "lbs_co2_per_mwh")  # v3's documented unit for co2_moer
    if units == "lbs_co2_per_mwh":
        factor = 1 / LBS_PER_MWH_PER_G_PER_KWH
    elif units in ("g_co2_per_kwh", "kg_co2_per_mwh"):
        factor = 1.0
    else:
        raise IntensityUnavailable(f"{origin}: WattTime data in {units!r}, not a CO2 intensity unit")
    signal_type = str(meta.get("signal_type") or "")
    signal: Signal = {"co2_moer": "marginal", "co2_aoer": "average"}.get(signal_type, "unknown")  # type: ignore[assignment]
    points = [
        (parse_time(p["point_time"]), None if p.get("value") is None else float(p["value"]) * factor)
        for p in document["data"]
    ]
    return IntensitySeries(
        _slots_from_points(points, step_s=float(meta.get("data_point_period_seconds") or 300), origin=origin),
        format=f"WattTime v3 forecast ({signal_type or 'signal not stated'}, {units})",
        provider="watttime",
        zone=meta.get("region"),
        signal=signal,
        generated_at=_optional_time(meta.get("generated_at")),
        origin=origin,
    )


def _ukgrid(data: list[dict[str, Any]], origin: str) -> IntensitySeries:
    slots = []
    for entry in data:
        intensity = entry.get("intensity") or {}
        value = intensity.get("forecast") if intensity.get("forecast") is not None else intensity.get("actual")
        slots.append((parse_time(entry["from"]), parse_time(entry["to"]), value))
    return IntensitySeries(
        _clean_slots(slots, origin),
        format="UK grid fw48h forecast",
        provider="ukgrid",
        zone="GB",
        signal="average",
        generated_at=None,
        origin=origin,
    )


def _carbon_aware_sdk(entries: list[Any], origin: str) -> IntensitySeries:
    if not entries or not isinstance(entries[0], dict):
        raise IntensityUnavailable(f"{origin}: an empty carbon-aware-sdk forecast list")
    location = entries[0].get("location")
    slots = []
    for entry in entries:
        if entry.get("location") != location:  # one series is one place; the first entry names it
            continue
        for point in entry.get("forecastData") or []:
            start = parse_time(point["timestamp"])
            slots.append((start, start + timedelta(minutes=float(point["duration"])), point.get("value")))
    return IntensitySeries(
        _clean_slots(slots, origin),
        format="carbon-aware-sdk forecast",
        provider="carbon-aware-sdk",
        zone=location,
        signal="unknown",
        generated_at=_optional_time(entries[0].get("generatedAt")),
        origin=origin,
    )


def _parse_csv(text: str, origin: str) -> IntensitySeries:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS[:3] if c not in (reader.fieldnames or [])]
    if missing:
        raise IntensityUnavailable(f"{origin}: the CSV lacks column(s) {', '.join(missing)}")
    slots, sources, generated = [], [], []
    for line, row in enumerate(reader, 2):
        try:
            start = parse_time(row["start_utc"])
            slots.append((start, start + timedelta(minutes=float(row["duration_min"])), float(row["g_per_kwh"])))
            if row.get("generated_at"):
                generated.append(parse_time(row["generated_at"]))
        except (TypeError, ValueError) as exc:
            raise IntensityUnavailable(f"{origin}:{line}: {exc}") from None
        if row.get("source") and row["source"] not in sources:
            sources.append(row["source"])
    provider = "; ".join(sources) or "unnamed source"
    return IntensitySeries(
        _clean_slots(slots, origin),
        format="canonical CSV",
        provider=provider,
        zone=None,
        # the CSV has no signal column: average unless its source says marginal
        signal="marginal" if "marginal" in provider.lower() or "moer" in provider.lower() else "average",
        generated_at=max(generated) if generated else None,
        origin=origin,
    )


def _optional_time(text: Any) -> datetime | None:
    return parse_time(text) if text else None


def _slots_from_points(points: list[tuple[datetime, Any]], step_s: float | None, origin: str) -> tuple[Slot, ...]:
    """Point forecasts (a value at each time) as slots: each value holds until the next point, for at most one step
    (the stated period, else the commonest spacing), so a missing point leaves a gap instead of a stretched value."""
    points = sorted(points, key=lambda point: point[0])
    if step_s is None:
        spacings = Counter((b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(points))
        if not spacings:
            raise IntensityUnavailable(f"{origin}: a single point says nothing about how long it holds")
        step_s = spacings.most_common(1)[0][0]
    step = timedelta(seconds=step_s)
    ends = [point[0] for point in points[1:]] + [points[-1][0] + step] if points else []
    return _clean_slots(
        [(start, min(end, start + step), value) for (start, value), end in zip(points, ends, strict=True)], origin
    )


def _clean_slots(raw: Iterable[tuple[datetime, datetime, Any]], origin: str) -> tuple[Slot, ...]:
    """Slots sorted, without the ones holding no value, each cut where the next begins (no overlap)."""
    kept = []
    for start, end, value in raw:
        if value is None:
            continue
        g_per_kwh = float(value)
        if not math.isfinite(g_per_kwh) or g_per_kwh < 0:
            raise IntensityUnavailable(f"{origin}: intensity {value!r} at {iso(start)} is not a possible value")
        if end > start:
            kept.append(Slot(start, end, g_per_kwh))
    kept.sort(key=lambda slot: slot.start)
    cut = [Slot(a.start, min(a.end, b.start), a.g_per_kwh) for a, b in itertools.pairwise(kept)] + kept[-1:]
    return tuple(slot for slot in cut if slot.end > slot.start)
