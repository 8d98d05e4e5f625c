"""How long the next `dvc repro` will run, from the project's own history, for a window asked without a duration:
the last record of each stage `dvc status` says has changed, summed. An estimate, and it says so and how."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from carbon_budget.errors import CarbonBudgetError
from carbon_budget.files import read_json
from carbon_budget.layout import record_path

DVC_STATUS_TIMEOUT_S = 120


@dataclass(frozen=True)
class Estimate:
    duration: timedelta
    energy_kwh: float
    how: str


def estimate_run(root: Path) -> Estimate:
    """The summed `duration_s` and `energy_kwh` of the last records of the stages `dvc status` reports changed;
    CarbonBudgetError when dvc cannot say, nothing would run, or none of them has a record."""
    stages = _changed_stages(root)
    if not stages:
        raise CarbonBudgetError("`dvc status` reports every stage up to date: nothing would run; give --duration")
    duration_s = energy_kwh = 0.0
    used, missing = [], []
    for stage in stages:
        try:
            record = read_json(root / record_path(stage))
            duration_s += float(record["duration_s"])
            energy_kwh += float(record.get("energy_kwh") or 0.0)
            used.append(stage)
        except (OSError, ValueError, KeyError, TypeError):
            missing.append(stage)
    if not used:
        raise CarbonBudgetError(
            f"no emission record to estimate from for the stages that would run ({', '.join(stages)}); give --duration"
        )
    how = (
        f"estimated: the last recorded durations of {', '.join(used)} ({record_path('<stage>').as_posix()}),"
        " the stages `dvc status` reports changed"
    )
    if missing:
        how += f"; no record for {', '.join(missing)}"
    return Estimate(timedelta(seconds=duration_s), energy_kwh, how)


def _changed_stages(root: Path) -> list[str]:
    dvc = shutil.which("dvc")
    if dvc is None:
        raise CarbonBudgetError("dvc is not on PATH, so the stages that would run are unknown; give --duration")
    try:
        done = subprocess.run(
            [dvc, "status", "--json"], cwd=root, capture_output=True, text=True, timeout=DVC_STATUS_TIMEOUT_S
        )
        status = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        status = None
    if not isinstance(status, dict):
        raise CarbonBudgetError("`dvc status` could not say which stages would run here; give --duration")
    return [str(name).rsplit(":", 1)[-1] for name in status]
