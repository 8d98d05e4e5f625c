"""`carbon-budget track`: any command measured like a stage of this pipeline."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from carbon_budget.records.record import load_record
from tests.conftest import BIN, run

LOOP = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"


def test_foreign_command_gets_a_full_record(tmp_path: Path, tool_env: dict[str, str]) -> None:
    (tmp_path / "params.yaml").write_text("carbon:\n  country_iso_code: FRA\n")
    run([str(BIN / "carbon-budget"), "track", "--stage", "shellwork", "--", "sh", "-c", LOOP], tmp_path, tool_env)
    record = load_record(tmp_path / "metrics/emissions/shellwork.json")
    assert record.status == "completed" and record.energy_kwh > 0
    assert record.cpu_energy_kwh > 0  # the child's CPU-seconds are charged to the tracked stage
    assert record.country_iso_code == "FRA" and record.tags["command"].startswith("sh -c")


def test_exit_code_passes_through_and_failure_is_recorded(tmp_path: Path, tool_env: dict[str, str]) -> None:
    out = tmp_path / "failing.json"
    result = run(
        [str(BIN / "carbon-budget"), "track", "--stage", "failing", "--output", str(out), "--", "sh", "-c", "exit 7"],
        tmp_path,
        tool_env,
        check=False,
    )
    assert result.returncode == 7
    record = json.loads(out.read_text())
    assert record["status"] == "failed" and record["extra_metrics"]["exit_code"] == 7


def test_sigterm_is_forwarded_and_the_record_says_aborted(tmp_path: Path, tool_env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [str(BIN / "carbon-budget"), "track", "--stage", "slow", "--", "sleep", "30"], cwd=tmp_path, env=tool_env
    )
    record = tmp_path / "metrics/emissions/slow.json"
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) != 0
    saved = json.loads(record.read_text())
    assert saved["status"] == "aborted" and saved["duration_s"] > 1


def test_unknown_command_is_a_message(tmp_path: Path, tool_env: dict[str, str]) -> None:
    result = run(
        [str(BIN / "carbon-budget"), "track", "--stage", "x", "--", "no-such-program-here"],
        tmp_path,
        tool_env,
        check=False,
    )
    assert result.returncode == 1 and "cannot run 'no-such-program-here'" in result.stderr
    assert "Traceback" not in result.stderr
