"""The cleanest time to start a job of known length: the lowest time-weighted mean intensity over the job's
duration, among starts from now on whose whole window the forecast covers.

Shifting is advice, never a gate: a forecast that has run out, a provider that is down or refuses the key, or no
window that fits all mean "start now", with the reason, and never an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from carbon_budget.errors import IntensityUnavailable
from carbon_budget.intensity.providers import load
from carbon_budget.intensity.series import IntensitySeries, iso

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_TIE = 1e-9  # g/kWh: means closer than this are equal, and the earlier start wins


@dataclass(frozen=True)
class Window:
    """Where to run a job: [start, end), its mean intensity, the intensity over the same length from now, and why.

    `mean_g_per_kwh` and `now_g_per_kwh` are None when the series cannot say; `source` names the series (or what
    was asked for, when none could be had)."""

    start: datetime
    end: datetime
    mean_g_per_kwh: float | None
    now_g_per_kwh: float | None
    source: str
    reason: str

    @property
    def saving_pct(self) -> float | None:
        """How much cleaner than starting now, in percent of the intensity now."""
        if self.mean_g_per_kwh is None or not self.now_g_per_kwh:
            return None
        return round((self.now_g_per_kwh - self.mean_g_per_kwh) / self.now_g_per_kwh * 100, 1)

    def saving_g(self, energy_kwh: float) -> float | None:
        """The CO2 a job of `energy_kwh` saves by starting here rather than now, in grams."""
        if self.mean_g_per_kwh is None or self.now_g_per_kwh is None:
            return None
        return (self.now_g_per_kwh - self.mean_g_per_kwh) * energy_kwh

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "mean_g_per_kwh": _rounded(self.mean_g_per_kwh),
            "now_g_per_kwh": _rounded(self.now_g_per_kwh),
            "saving_pct": self.saving_pct,
            "source": self.source,
            "reason": self.reason,
        }


def best_window(
    series: IntensitySeries,
    duration: timedelta,
    now: datetime,
    *,
    finish_by: datetime | None = None,
    latest_start: datetime | None = None,
) -> Window:
    """The start in [now, latest_start] whose window of `duration` has the lowest mean intensity, ending by
    `finish_by` and inside the series' horizon; "start now", with the reason, when no such window exists.

    The mean is linear in the start between the moments where the window's start or end crosses a slot
    boundary, so its minimum lies at one of them (or at now): those are the only starts tried."""
    source = series.describe()
    now_mean = series.mean_over(now, now + duration)
    limit_end = min(series.end, finish_by) if finish_by is not None else series.end
    boundaries = {slot.start for slot in series.slots} | {slot.end for slot in series.slots}
    candidates = {now} | boundaries | {moment - duration for moment in boundaries}
    best: tuple[float, datetime] | None = None
    for start in sorted(candidates):
        if start < now or start + duration > limit_end or (latest_start is not None and start > latest_start):
            continue
        mean = series.mean_over(start, start + duration)
        if mean is not None and (best is None or mean < best[0] - _TIE):
            best = (mean, start)
    if best is None:
        return start_now(now, duration, source, _why_none_fits(series, duration, now, finish_by), now_mean)
    mean, start = best
    span = f"the forecast's {format_duration(duration)} windows from {iso(now)} to {iso(limit_end)}"
    if latest_start is not None:
        span += f" starting by {iso(latest_start)}"
    reason = f"starting now is the cleanest of {span}" if start == now else f"the cleanest of {span}"
    return Window(start, start + duration, mean, now_mean, source, reason)


def start_now(
    now: datetime, duration: timedelta, source: str, reason: str, now_g_per_kwh: float | None = None
) -> Window:
    """The fallback: run at once, saving nothing, and say why."""
    return Window(now, now + duration, now_g_per_kwh, now_g_per_kwh, source, f"start now: {reason}")


def plan(
    source: str,
    root: Path,
    now: datetime,
    duration: timedelta,
    *,
    finish_by: datetime | None = None,
    latest_start: datetime | None = None,
) -> tuple[Window, IntensitySeries | None]:
    """The window for `source` (a file or a provider), and the series it was chosen on (None when none could be
    had: the window then starts now and says why)."""
    try:
        series = load(source, root, now)
    except IntensityUnavailable as exc:
        return start_now(now, duration, source, exc.reason), None
    return best_window(series, duration, now, finish_by=finish_by, latest_start=latest_start), series


def parse_duration(text: str) -> timedelta:
    """`2h`, `90m`, `300s`, `1d`, `1h30m`, or `0`: ValueError for anything else (a bare number has no unit)."""
    compact = text.strip().lower().replace(" ", "")
    if compact == "0":
        return timedelta(0)
    if not compact or _DURATION.sub("", compact):
        raise ValueError(f"{text!r} is not a duration (e.g. 2h, 90m, 300s, 1h30m)")
    return timedelta(seconds=sum(float(amount) * _UNIT_S[unit] for amount, unit in _DURATION.findall(compact)))


def _why_none_fits(series: IntensitySeries, duration: timedelta, now: datetime, finish_by: datetime | None) -> str:
    if series.end <= now:
        return f"the forecast ended at {iso(series.end)}, before now ({iso(now)})"
    if finish_by is not None and finish_by < now + duration:
        return f"finishing by {iso(finish_by)} leaves less than {format_duration(duration)} from now ({iso(now)})"
    if series.end < now + duration:
        return f"the forecast ends at {iso(series.end)}, less than {format_duration(duration)} from now ({iso(now)})"
    return f"the forecast covers no whole {format_duration(duration)} window that can start by then (gaps in its data)"


def format_duration(duration: timedelta) -> str:
    """2h, 1h30m, 5m, 45s: the way a duration is given on the command line."""
    seconds = round(duration.total_seconds())
    parts = [(seconds // 3600, "h"), (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount) or "0s"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
