"""Tell a change from noise, and compare like with like.

Two records measured on different machines, or by different methods, cannot be compared for energy: a laptop's
RAPL figure and a CI runner's TDP estimate differ by more than most changes. Each record has a fingerprint of
what measured it (`records.fingerprint`); energy and CO2 are compared only between equal fingerprints. Work
figures that do not depend on the machine's power model (CPU-seconds, epochs, parameters, model size) are compared
in every case.

A change is significant only when it leaves the noise band: the spread of repeated measurements (base and head
remeasured side by side, or the base branch's executions in MLflow), never narrower than `report.noise_pct`,
which is also the band when nothing was repeated, and then said to be a default.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from carbon_budget.config import PARAMS_FILE


@dataclass(frozen=True)
class Noise:
    """The band each figure must leave to count as a change, in percent, and where it came from."""

    source: str
    default_pct: float
    by_figure: dict[str, float] = field(default_factory=dict)  # "total.energy_kwh", "train.energy_kwh", ...

    def band(self, name: str) -> float:
        return max(self.by_figure.get(name, 0.0), self.default_pct)

    @classmethod
    def default(cls, pct: float, params_file: str = PARAMS_FILE) -> Noise:
        """The band when nothing was measured twice: `report.noise_pct` of `params_file`, said to be a default."""
        return cls(f"default: {params_file} report.noise_pct ({pct:g} %), no repeated measurement", pct)


def spread_pct(values: list[float]) -> float:
    """The relative range of repeated measurements of one thing, in percent of their median."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle * 100 if middle else 0.0


# Student's t, two-sided 99 %, by degrees of freedom (1..9): a prediction interval from a few past runs
_T99 = (63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250)


def prediction_band_pct(values: list[float]) -> float:
    """How far one more run of the same thing may land from the median of `values` (2 to 10 past runs), in percent
    of that median: the 99 % prediction interval t(n-1) * s * sqrt(1 + 1/n). Few runs give a wide band, as they
    should: three runs say little about the next one."""
    n = len(values)
    middle = statistics.median(values) if n >= 2 else 0.0
    if not middle:
        return 0.0
    t = _T99[min(n - 1, len(_T99)) - 1]
    return t * statistics.stdev(values) * math.sqrt(1 + 1 / n) / abs(middle) * 100


NOT_COMPARED: dict[str, Any] = {"change_pct": None, "noise_pct": None, "significant": False, "verdict": "not compared"}


def judge(change_pct: float | None, noise_pct: float) -> dict[str, Any]:
    """change_pct, noise_pct and significant for one figure whose change is `change_pct` (None: nothing to compare
    with); a regression or an improvement only out of the band."""
    if change_pct is None or not math.isfinite(change_pct):
        return {**NOT_COMPARED, "noise_pct": noise_pct}
    significant = abs(change_pct) > noise_pct
    verdict = ("regression" if change_pct > 0 else "improvement") if significant else "no significant change"
    return {"change_pct": change_pct, "noise_pct": noise_pct, "significant": significant, "verdict": verdict}
