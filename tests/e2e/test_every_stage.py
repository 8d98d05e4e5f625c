"""A pass means within budget however the pipeline grows: every stage DVC knows is measured, exempt by name, or
named by a failing gate; and what ships is what passed (no registered model for a failing gate)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, ROOT, edit_params, run

pytestmark = pytest.mark.integration

BUSY = "import time; t = time.process_time(); exec('while time.process_time() - t < 0.3: pass')"


def add_stage(repo: Path, name: str, body: dict[str, object]) -> None:
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())
    dvc["stages"][name] = body
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))


def test_a_stage_added_beside_the_gate_is_owed_and_named(project: Path, tool_env: dict[str, str]) -> None:
    """The reference pipeline with a stage that writes its record but is not among the gate's deps: the gate
    reruns (the list of stages changed), owes its record, and names it; once ordered before the gate it counts."""
    env = {**tool_env, "CARBON_BUDGET_WORKER": "off"}
    run(["dvc", "repro"], project, env)
    add_stage(
        project,
        "augment",
        {
            "cmd": f'carbon-budget track --stage augment -- python -c "{BUSY}"',
            "outs": [{"metrics/emissions/augment.json": {"cache": False}}],
        },
    )
    failed = run(["dvc", "repro"], project, env, check=False)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "stage augment is not among the deps of stage gate" in output
    assert "gate: FAILED" in output  # the gate reran although none of its own deps changed
    dvc = yaml.safe_load((project / "dvc.yaml").read_text())
    dvc["stages"]["gate"]["deps"].append("metrics/emissions/augment.json")
    (project / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    run(["dvc", "repro"], project, env)
    gate = json.loads((project / "metrics/gate.json").read_text())
    augment = json.loads((project / "metrics/emissions/augment.json").read_text())
    assert gate["stages"]["augment"]["energy_kwh"] == augment["energy_kwh"] > 0
    assert gate["energy_kwh"] == pytest.approx(sum(s["energy_kwh"] for s in gate["stages"].values()))


TEAM_DVC = """\
stages:
  prepare:
    cmd: python busy.py data.txt
    outs: [data.txt]
"""
BUSY_SCRIPT = f"import sys\n{BUSY}\nopen(sys.argv[1], 'w').write('x')\n"


def test_a_team_stage_added_after_init_fails_until_init_adopts_it(tmp_path: Path, tool_env: dict[str, str]) -> None:
    repo = tmp_path / "team"
    repo.mkdir()
    (repo / "dvc.yaml").write_text(TEAM_DVC)
    (repo / "busy.py").write_text(BUSY_SCRIPT)
    env = {**tool_env, "CARBON_BUDGET_WORKER": "off"}
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["carbon-budget", "init"]):
        run(command, repo, env)
    run(["dvc", "repro"], repo, env)
    add_stage(repo, "extra", {"cmd": "python busy.py extra.txt", "deps": ["data.txt"], "outs": ["extra.txt"]})
    failed = run(["dvc", "repro"], repo, env, check=False)
    assert failed.returncode != 0 and "stage extra is measured by nothing" in failed.stdout + failed.stderr
    # an exemption by name passes, and says so
    edit_params(repo, budget={"exempt": {"extra": "a second of CPU, checked by hand"}})
    exempted = run(["dvc", "repro"], repo, env)
    assert "exempt by name (budget.exempt): extra (a second of CPU, checked by hand)" in exempted.stdout
    edit_params(repo, budget={"exempt": {}})
    assert run(["dvc", "repro"], repo, env, check=False).returncode != 0
    run(["carbon-budget", "init"], repo, env)
    passed = run(["dvc", "repro"], repo, env)
    assert "gate: PASSED" in passed.stdout
    assert json.loads((repo / "metrics/emissions/extra.json").read_text())["energy_kwh"] > 0


def registered_versions(project: Path, name: str) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    try:
        return len(client.search_model_versions(f"name='{name}'"))
    except Exception:  # the registered model does not exist yet
        return 0


def test_a_model_that_fails_the_gate_is_never_registered(project: Path, tool_env: dict[str, str]) -> None:
    env = {**tool_env, "CARBON_BUDGET_WORKER": "off"}  # publishing in the gate's own process, as CI does
    edit_params(project, export={"registered_model_name": "digits"}, budget={"energy_kwh": 1e-12})
    assert run(["dvc", "repro"], project, env, check=False).returncode != 0
    assert registered_versions(project, "digits") == 0
    # `carbon-budget gate --publish` (the gate of a project set up by init) registers nothing either
    assert run(["carbon-budget", "gate", "--publish"], project, env, check=False).returncode != 0
    assert registered_versions(project, "digits") == 0
    edit_params(project, budget={"energy_kwh": 1.0})
    run(["dvc", "repro"], project, env)
    assert registered_versions(project, "digits") == 1


def test_the_reference_pipeline_has_no_stage_the_gate_does_not_account_for() -> None:
    listed = run([str(BIN / "carbon-budget"), "stages"], ROOT, dict(os.environ)).stdout
    assert "MEASURED BY NOTHING" not in listed and "preprocess: measured" in listed
