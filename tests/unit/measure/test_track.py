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


def test_secrets_the_shell_expanded_stay_out_of_the_record_and_the_output(
    tmp_path: Path, tool_env: dict[str, str]
) -> None:
    """DVC's shell expands `$HF_TOKEN` and `$MLFLOW_TRACKING_URI` before `track` sees the command, and the record is
    committed and its tags published: secret variables' values are masked there, as CI systems mask them."""
    token, password = "hf_Wm5PRIVATEq2", "Kx7?mR4nQ"  # SQLAlchemy takes a `?` in a password raw
    uri = f"postgresql://alice:{password}@127.0.0.1:9/mlflow"
    env = tool_env | {
        "HF_TOKEN": token,
        "MLFLOW_TRACKING_URI": uri,
        "TOKENIZERS_PARALLELISM": "false",  # not a secret, though its name holds TOKEN: `false` stays readable
        "CARBON_BUDGET_WORKER": "off",
    }
    out = tmp_path / "leak.json"
    wrapped = ["python", "-c", "import sys", "--token", token, f"--tracking-uri={uri}", "--shuffle", "false"]
    result = run(
        [str(BIN / "carbon-budget"), "track", "--stage", "leak", "--output", str(out), "--", *wrapped], tmp_path, env
    )
    saved = out.read_text()
    assert token not in saved and password not in saved and "alice" not in saved
    assert token not in result.stdout + result.stderr and password not in result.stdout + result.stderr
    assert json.loads(saved)["tags"]["command"] == (
        "python -c 'import sys' --token '***' '--tracking-uri=postgresql://***@127.0.0.1:9/mlflow' --shuffle false"
    )


def test_a_secret_in_a_command_that_cannot_run_stays_out_of_the_message(
    tmp_path: Path, tool_env: dict[str, str]
) -> None:
    token = "hf_Wm5PRIVATEq2"
    result = run(
        [str(BIN / "carbon-budget"), "track", "--stage", "x", "--", f"./no-such-program-{token}"],
        tmp_path,
        tool_env | {"HF_TOKEN": token, "CARBON_BUDGET_WORKER": "off"},
        check=False,
    )
    assert result.returncode == 1 and "cannot run './no-such-program-***'" in result.stderr
    assert token not in result.stderr
