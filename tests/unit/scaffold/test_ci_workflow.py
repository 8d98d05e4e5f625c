"""`carbon-budget init --ci github`: the pull-request workflow a team's own project gets, and with `github-nightly`
a nightly training run that waits for the grid's cleanest hour, checked by the tools GitHub users check theirs with
(GitHub's workflow schema, zizmor), and written once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from carbon_budget.cli import main
from carbon_budget.scaffold.ci import GITHUB_NIGHTLY_WORKFLOW, GITHUB_WORKFLOW
from tests.conftest import BIN, run

DVC_YAML = "stages:\n  train:\n    cmd: python train.py\n    deps: [train.py]\n    outs: [m.txt]\n"


@pytest.fixture
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def init(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["init", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_the_workflow_runs_the_gate_posts_the_report_and_passes_schema_and_zizmor(team: Path) -> None:
    code, output = init("--ci", "github")
    assert code == 0 and f"+++ b/{GITHUB_WORKFLOW.as_posix()}" in output
    path = team / GITHUB_WORKFLOW
    steps = yaml.safe_load(path.read_text())["jobs"]["carbon-budget"]["steps"]
    commands = "\n".join(str(step.get("run", "")) for step in steps)
    assert "dvc repro" in commands and "carbon-budget report --base" in commands
    repro = next(step for step in steps if step.get("id") == "repro")
    assert repro["continue-on-error"] is True  # the report is posted before the check fails
    assert steps[-1]["if"] == "steps.repro.outcome == 'failure'" and "exit 1" in steps[-1]["run"]
    assert all(
        "@" in step["uses"] and len(step["uses"].split("@")[1].split()[0]) == 40 for step in steps if "uses" in step
    )
    run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)], team)
    audit = run([str(BIN / "zizmor"), "--offline", str(path)], team)
    assert "No findings" in audit.stdout + audit.stderr


def test_init_again_changes_nothing_and_never_overwrites_a_teams_workflow(team: Path) -> None:
    assert init("--ci", "github")[0] == 0
    written = {p: (team / p).read_bytes() for p in ("dvc.yaml", "params.yaml", GITHUB_WORKFLOW)}
    assert "nothing to change" in init("--ci", "github")[1]
    assert {p: (team / p).read_bytes() for p in written} == written
    (team / GITHUB_WORKFLOW).write_text("name: ours\n")
    code, output = init("--ci", "github")
    assert code == 0 and "exists and differs from the one init writes: left as it is" in output
    assert (team / GITHUB_WORKFLOW).read_text() == "name: ours\n"


def test_an_unknown_ci_is_refused_by_name(team: Path) -> None:
    code, output = init("--ci", "gitlab")
    assert code == 2 and "'gitlab' is not one of 'github', 'github-nightly'" in output
    assert not (team / GITHUB_WORKFLOW).exists()


def test_the_nightly_workflow_waits_for_the_forecast_window_then_reproduces(team: Path) -> None:
    code, output = init("--ci", "github-nightly")
    assert code == 0 and f"+++ b/{GITHUB_NIGHTLY_WORKFLOW.as_posix()}" in output
    assert (team / GITHUB_WORKFLOW).is_file()  # the pull-request workflow comes with it
    path = team / GITHUB_NIGHTLY_WORKFLOW
    document = yaml.safe_load(path.read_text())
    assert document[True]["schedule"] and "workflow_dispatch" in document[True]  # YAML 1.1 reads `on:` as True
    step = next(s for s in document["jobs"]["nightly"]["steps"] if "carbon-budget wait" in str(s.get("run", "")))
    assert '--forecast "$CARBON_BUDGET_FORECAST"' in step["run"] and "-- dvc repro" in step["run"]
    assert '--max-wait "$CARBON_BUDGET_MAX_WAIT"' in step["run"]
    assert step["env"]["CARBON_BUDGET_FORECAST"] == "${{ vars.CARBON_BUDGET_FORECAST }}"
    assert "${{" not in step["run"]  # what a repository variable holds reaches the shell through env, quoted
    run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)], team)
    audit = run([str(BIN / "zizmor"), "--offline", str(path)], team)
    assert "No findings" in audit.stdout + audit.stderr
    written = {p: (team / p).read_bytes() for p in (GITHUB_WORKFLOW, GITHUB_NIGHTLY_WORKFLOW)}
    assert "nothing to change" in init("--ci", "github-nightly")[1]
    assert {p: (team / p).read_bytes() for p in written} == written
