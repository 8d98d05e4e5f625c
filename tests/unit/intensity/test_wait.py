"""`carbon-budget wait`: it sleeps until the cleanest start within --max-wait, runs the command, passes its exit code
through, ends cleanly on SIGTERM while it waits, and writes what it predicted beside what ran."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import BIN

WAIT = [str(BIN / "carbon-budget"), "wait"]


def forecast(path: Path, clean_in_s: float) -> datetime:
    """A series dirty (500 g/kWh) until `clean_in_s` from now, clean (100) for two hours after; the clean start."""
    now = datetime.now(UTC).replace(microsecond=0)
    clean = now + timedelta(seconds=clean_in_s)
    path.write_text(
        "start_utc,duration_min,g_per_kwh,source,generated_at\n"
        f"{(now - timedelta(minutes=1)):%Y-%m-%dT%H:%M:%SZ},{(clean - now).total_seconds() / 60 + 1},500,test,\n"
        f"{clean:%Y-%m-%dT%H:%M:%SZ},120,100,test,\n"
    )
    return clean


def outcome(where: Path) -> dict[str, object]:
    return json.loads((where / ".carbon-budget" / "carbon-aware.json").read_text())  # type: ignore[no-any-return]


def test_max_wait_0_runs_at_once_and_passes_the_exit_code_through(tmp_path: Path) -> None:
    forecast(tmp_path / "f.csv", clean_in_s=60)
    command = [sys.executable, "-c", "import sys; open('ran', 'w').write('yes'); sys.exit(3)"]
    done = subprocess.run(
        [*WAIT, "--forecast", "f.csv", "--duration", "5m", "--max-wait", "0", "--", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert (tmp_path / "ran").read_text() == "yes" and "running now" in done.stderr
    written = outcome(tmp_path)
    assert written["status"] == "failed" and written["exit_code"] == 3
    assert written["predicted_g_per_kwh"] == written["now_g_per_kwh"] and written["predicted_saving_pct"] == 0.0


@pytest.mark.integration
def test_it_waits_for_the_clean_slot_then_runs(tmp_path: Path) -> None:
    clean = forecast(tmp_path / "f.csv", clean_in_s=4)
    command = [sys.executable, "-c", "print('hello')"]
    done = subprocess.run(
        [*WAIT, "--forecast", "f.csv", "--duration", "5m", "--max-wait", "2m", "--", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n"  # the command's own output is left alone; ours goes to stderr
    assert f"waiting until {clean:%Y-%m-%dT%H:%M:%SZ}" in done.stderr and "cleaner" in done.stderr
    written = outcome(tmp_path)
    assert written["planned_start"] == f"{clean:%Y-%m-%dT%H:%M:%SZ}" and written["predicted_g_per_kwh"] == 100.0
    assert str(written["started_at"]) >= str(written["planned_start"])  # it did not start before the clean slot
    assert written["realised_g_per_kwh"] == 100.0 and written["status"] == "completed"
    assert float(str(written["now_g_per_kwh"])) > 100.0 and float(str(written["predicted_saving_pct"])) > 0


@pytest.mark.integration
def test_sigterm_while_waiting_ends_cleanly_without_running_the_command(tmp_path: Path) -> None:
    forecast(tmp_path / "f.csv", clean_in_s=90)
    command = [sys.executable, "-c", "open('ran', 'w').write('yes')"]
    waiting = subprocess.Popen(
        [*WAIT, "--forecast", "f.csv", "--duration", "5m", "--max-wait", "2m", "--", *command],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiting.stderr is not None
    assert "waiting until" in waiting.stderr.readline()  # it is asleep now
    waiting.send_signal(signal.SIGTERM)
    assert waiting.wait(timeout=10) == 128 + signal.SIGTERM
    rest = waiting.stderr.read()
    assert "interrupted by SIGTERM while waiting" in rest and "Traceback" not in rest
    assert not (tmp_path / "ran").exists()
    written = outcome(tmp_path)
    assert written["status"] == "interrupted" and written["started_at"] is None
