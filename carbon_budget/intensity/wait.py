"""`carbon-budget wait`: sleep until a window's start, run a command, and keep what was predicted beside what ran.

SIGINT and SIGTERM end a wait at once (the command never runs) and are passed on to the command once it runs,
so a cancelled CI job or a Ctrl-C stops cleanly either way. The outcome file (`CARBON_AWARE_FILE`) lets the gate
and the report show the saving against starting at once.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from carbon_budget.errors import CarbonBudgetError
from carbon_budget.files import write_json
from carbon_budget.intensity.series import IntensitySeries, iso
from carbon_budget.intensity.window import Window
from carbon_budget.layout import CARBON_AWARE_FILE

SCHEMA = "carbon-aware/1"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(CarbonBudgetError):
    """SIGINT or SIGTERM arrived while waiting: the command was not run."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} while waiting: the command was not run")
        self.signum = signum


def utc_now() -> datetime:
    return datetime.now(UTC)


def sleep_until(moment: datetime, say: Callable[[str], None], announce: str) -> None:
    """Say `announce`, then sleep until `moment`, saying how long is left every minute (every 10 for waits over an
    hour); raises Interrupted on SIGINT/SIGTERM. The signals are caught before `announce` is said, so whoever reads
    it may stop the wait at once."""
    left_s = (moment - utc_now()).total_seconds()
    every_s = 600.0 if left_s > 3600 else 60.0
    with _signals(_raise_interrupted):
        say(announce)
        while left_s > 0:
            time.sleep(min(left_s, every_s))
            left_s = (moment - utc_now()).total_seconds()
            if left_s > 0:
                say(f"waiting: {left_s / 60:.0f} min left, until {iso(moment)}")


def run_command(command: Sequence[str]) -> int:
    """Run `command` to its end, passing SIGINT/SIGTERM on to it; its exit code, 128 + N for a signal N as a
    shell reports it."""
    try:
        child = subprocess.Popen(list(command))
    except OSError as exc:
        raise CarbonBudgetError(f"cannot run {command[0]!r}: {exc.strerror}") from None

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    with _signals(forward):
        code = child.wait()
    return code if code >= 0 else 128 - code


def outcome(
    window: Window,
    series: IntensitySeries | None,
    max_wait_s: float,
    started_at: datetime | None,
    ended_at: datetime | None,
    exit_code: int | None,
) -> dict[str, Any]:
    """What was predicted and what ran, as written to CARBON_AWARE_FILE (keys documented in
    docs/how-to/carbon-aware.md). `realised_g_per_kwh` is the series' mean over the hours the command ran (None
    when it ran past the series, did not run, or is still running: `status` is then `running`, written as the
    command starts so that a gate the command runs finds the wait it runs under)."""
    realised = series.mean_over(started_at, ended_at) if series and started_at and ended_at else None
    return {
        "schema": SCHEMA,
        "source": window.source,
        "signal": series.signal if series else None,
        "reason": window.reason,
        "max_wait_s": max_wait_s,
        "duration_s": (window.end - window.start).total_seconds(),
        "planned_start": iso(window.start),
        "planned_end": iso(window.end),
        "predicted_g_per_kwh": window.as_dict()["mean_g_per_kwh"],
        "now_g_per_kwh": window.as_dict()["now_g_per_kwh"],
        "predicted_saving_pct": window.saving_pct,
        "started_at": iso(started_at) if started_at else None,
        "ended_at": iso(ended_at) if ended_at else None,
        "realised_g_per_kwh": None if realised is None else round(realised, 3),
        "exit_code": exit_code,
        "status": _status(started_at, exit_code),
    }


def _status(started_at: datetime | None, exit_code: int | None) -> str:
    if started_at is None:
        return "interrupted"
    if exit_code is None:
        return "running"
    return "completed" if exit_code == 0 else "failed"


def write_outcome(root: Path, document: dict[str, Any]) -> Path:
    path = root / CARBON_AWARE_FILE
    write_json(path, document)
    return path


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def _signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    previous = {signum: signal.signal(signum, handler) for signum in _SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
