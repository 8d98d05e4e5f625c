"""Faults with real processes: MLflow unreachable, a stage killed mid-epoch, secrets in messages."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from carbon_budget.publish.redact import redact
from tests.conftest import edit_params, run


def count_runs(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as con:
        runs = con.execute("select count(*) from runs").fetchone()[0]
        names = con.execute("select count(distinct run_uuid) from tags where key = 'carbon_budget.record_id'")
        return runs, names.fetchone()[0]


@pytest.mark.integration
def test_mlflow_down_loses_nothing_and_sync_delivers_once(project: Path, tool_env: dict[str, str]) -> None:
    down = {
        **tool_env,
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "2",
    }
    result = run(["dvc", "repro"], project, down)
    assert result.stderr.count("did not take the runs") == 1  # warned once, and the pipeline still passed
    assert "gate: PASSED" in result.stdout
    assert len(list((project / ".carbon-budget/outbox").iterdir())) == 1

    store = project / "synced.db"
    back = {**tool_env, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    assert "synced" in run(["carbon-budget", "sync"], project, back).stdout
    first = count_runs(store)
    assert first == (6, 5)  # the parent and the five stages
    assert "nothing to sync" in run(["carbon-budget", "sync"], project, back).stdout
    assert count_runs(store) == first


@pytest.mark.integration
def test_sigterm_mid_epoch_keeps_the_energy_and_the_next_repro_resumes(project: Path, tool_env: dict[str, str]) -> None:
    edit_params(project, train={"epochs": 2000}, forecast={"on_overrun": "warn"})
    run(["dvc", "repro", "preprocess"], project, tool_env)
    stage = subprocess.Popen(
        ["python", "-m", "stages.train"],
        cwd=project,
        env=tool_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(6)  # well into training
    stage.send_signal(signal.SIGTERM)
    _, stderr = stage.communicate(timeout=30)
    assert stage.returncode != 0 and "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    record = json.loads((project / "metrics/emissions/train.json").read_text())
    assert record["status"] == "aborted" and record["energy_kwh"] > 0 and record["duration_s"] > 3
    assert not (project / "models/trained/model.pt").exists()

    edit_params(project, train={"epochs": 3})
    resumed = run(["dvc", "repro"], project, tool_env)
    assert "Running stage 'preprocess'" not in resumed.stdout  # resumes from the stage that was stopped
    assert "Running stage 'train'" in resumed.stdout and "gate: PASSED" in resumed.stdout


def test_credentials_never_reach_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-pass")
    text = redact("POST https://alice:s3cret-pass@mlflow.example.org/api failed, token s3cret-pass")
    assert "s3cret-pass" not in text and "alice" not in text and "***@mlflow.example.org" in text


@pytest.mark.integration
def test_two_clones_at_once_share_one_sqlite_store(project: Path, tool_env: dict[str, str], tmp_path: Path) -> None:
    """Two `dvc repro` in two clones against one sqlite file, both gates publishing at the same moment."""
    store = tmp_path / "shared" / "mlflow.db"  # not yet created: both processes race to create it
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, tool_env)
    env = {**tool_env, "MLFLOW_TRACKING_URI": f"sqlite:///{store}", "CARBON_BUDGET_WORKER": "off"}
    repros = [
        subprocess.Popen(["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for repo in (project, clone)
    ]
    for repro in repros:
        out, err = repro.communicate(timeout=600)
        assert repro.returncode == 0 and "gate: PASSED" in out, err
    for repo in (project, clone):  # anything a locked database turned away is delivered now, once
        run(["carbon-budget", "sync"], repo, env)
        run(["carbon-budget", "gate"], repo, env)  # each clone's records and outputs are its own, intact

    record_ids = {
        json.loads((repo / f"metrics/emissions/{stage}.json").read_text())["record_id"]
        for repo in (project, clone)
        for stage in ("preprocess", "train", "evaluate", "export", "gate")
    }
    with sqlite3.connect(store) as con:
        parents = con.execute(
            "select count(*) from runs r where not exists"
            " (select 1 from tags t where t.run_uuid = r.run_uuid and t.key = 'mlflow.parentRunId')"
        ).fetchone()[0]
        logged = [r[0] for r in con.execute("select value from tags where key = 'carbon_budget.record_id'")]
    assert parents == 2
    assert sorted(logged) == sorted(record_ids) and len(record_ids) == 10  # every stage run of both, once
