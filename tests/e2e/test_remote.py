"""A DVC remote holds the data and models: a fresh clone pulls them and reruns nothing (what a CI runner does)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from carbon_budget.layout import ITSELF
from pipeline import layout
from tests.conftest import run, stages_run, stale_stages

pytestmark = pytest.mark.integration


def test_fresh_clone_pulls_data_and_models_and_reruns_nothing(
    project: Path, tool_env: dict[str, str], tmp_path: Path
) -> None:
    remote = tmp_path / "dvc-remote"
    run(["dvc", "remote", "add", "-d", "local", str(remote)], project, tool_env)
    assert "gate: PASSED" in run(["dvc", "repro"], project, tool_env).stdout
    run(["dvc", "push"], project, tool_env)
    assert any(p.is_file() for p in remote.rglob("*"))
    # what is kept in git: dvc.lock, the remote's address, the records and metrics (cache: false)
    run(["git", "add", "-A"], project, tool_env)
    run(["git", "commit", "-qm", "pipeline outputs"], project, tool_env)

    clone = tmp_path / "ci-runner"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, tool_env)
    assert not (clone / layout.MODEL).exists()
    assert "not in cache" in run(["dvc", "status"], clone, tool_env).stdout  # without the pull it would retrain

    run(["dvc", "pull"], clone, tool_env)
    for output in (layout.PROCESSED_DATA, layout.MODEL, layout.EXPORT_DIR / layout.EXPORT_FILES["torchscript"]):
        assert (clone / output).read_bytes() == (project / output).read_bytes(), output
    assert stale_stages(clone, tool_env) == {}
    repro = run(["dvc", "repro"], clone, tool_env)
    assert stages_run(repro.stdout) == [] and "is cached" not in repro.stdout
    assert not (clone / ".carbon-budget").exists()  # nothing ran, so nothing was measured or published

    # The clone's gate reads the same records, outputs and metrics, and says the same. The tool's own cost is
    # machine-local state (docs/reference/records.md): the project's gate decided its execution before that
    # execution's publishing wrote its own line, so it counted none, and a later reading counts what it counted
    # (docs/reference/gate.md, one verdict per execution). The clone has none either: both say the same.
    itself = project / ".carbon-budget/itself.json"
    deadline = time.time() + 90
    while not itself.exists() and time.time() < deadline:  # the worker writes it once it has published
        time.sleep(0.5)
    project_verdict = json.loads(run(["carbon-budget", "gate", "--json"], project, tool_env).stdout)
    fresh = json.loads(run(["carbon-budget", "gate", "--json"], clone, tool_env).stdout)
    assert fresh["passed"] is True and ITSELF not in fresh["stages"] and ITSELF not in project_verdict["stages"]
    assert project_verdict["stages"] == fresh["stages"] and fresh["energy_kwh"] == project_verdict["energy_kwh"]
    # Given the same own line counted (as the next execution's gate counts it), both say exactly the same.
    counted = Path(".carbon-budget/itself-counted.json")
    (clone / counted).parent.mkdir()
    for root in (project, clone):
        shutil.copy(itself, root / counted)
    with_own = json.loads(run(["carbon-budget", "gate", "--json"], clone, tool_env).stdout)
    own = json.loads(itself.read_text())
    assert with_own["stages"][ITSELF]["energy_kwh"] == own["energy_kwh"]
    assert with_own["energy_kwh"] == pytest.approx(fresh["energy_kwh"] + own["energy_kwh"], rel=1e-12)
    assert json.loads(run(["carbon-budget", "gate", "--json"], clone, tool_env).stdout) == json.loads(
        run(["carbon-budget", "gate", "--json"], project, tool_env).stdout
    )
