"""Pull-request checks: the report against a base commit, the workflow file, queued experiments."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, ROOT, edit_params, run

WORKFLOW = ROOT / ".github/workflows/carbon-budget.yml"


def commit_all(repo: Path, env: dict[str, str], message: str) -> str:
    run(["git", "add", "-A"], repo, env)
    generated = [p for p in ("metrics", "plots", "dvc.lock") if (repo / p).exists()]
    run(["git", "add", "-f", *generated], repo, env)
    run(["git", "commit", "-qm", message], repo, env)
    return run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()


@pytest.mark.integration
def test_report_against_base_shows_deltas_and_the_raised_budget(project: Path, tool_env: dict[str, str]) -> None:
    run(["dvc", "repro"], project, tool_env)
    base = commit_all(project, tool_env, "base")
    edit_params(project, train={"epochs": 5}, budget={"energy_kwh": 0.005})
    run(["dvc", "repro"], project, tool_env)

    summary = project / "summary.md"
    env = {**tool_env, "GITHUB_STEP_SUMMARY": str(summary)}
    markdown = run(["carbon-budget", "report", "--base", base], project, env).stdout
    # within budget, but against a budget this very change raised: never a plain pass
    assert markdown.splitlines()[1] == "## ⚠️ Carbon budget: within budget, loosened by this change"
    assert "budget.energy_kwh raised** 0.0005 → 0.005 in this change" in markdown
    assert "| train.epochs | 3 | 5 |" in markdown
    assert "| train |" in markdown and "%)" in markdown
    assert summary.read_text() == markdown

    document = json.loads(run(["carbon-budget", "report", "--base", base, "--format", "json"], project, env).stdout)
    train = next(s for s in document["stages"] if s["stage"] == "train")
    record = json.loads((project / "metrics/emissions/train.json").read_text())
    assert train["energy_kwh"]["current"] == record["energy_kwh"]
    assert document["budget_changes"][0]["key"] == "budget.energy_kwh"
    assert document["verdict"]["passed"] is True

    # as the pull-request workflow runs it, remeasuring off: MLflow history is asked, and the band says why not
    edit_params(project, report={"pull_request_remeasure": 0})
    argv = ["carbon-budget", "report", "--base", base, "--pull-request", "--json-output", "report.json"]
    pr_markdown = run(argv, project, env).stdout
    pr_document = json.loads((project / "report.json").read_text())
    assert (
        "no MLflow history" in pr_document["noise"]["source"] and "at least 3 needed" in pr_document["noise"]["source"]
    )
    assert pr_document["noise"]["source"] in pr_markdown and pr_markdown.startswith("<!-- carbon-budget-report -->")


@pytest.mark.integration
def test_first_pull_request_base_without_records(project: Path, tool_env: dict[str, str]) -> None:
    shutil.rmtree(project / "metrics")
    base = commit_all(project, tool_env, "a base that never ran the pipeline")
    run(["dvc", "repro"], project, tool_env)
    out = run(["carbon-budget", "report", "--base", base], project, tool_env).stdout
    assert "has no emission records yet" in out
    unknown = run(["carbon-budget", "report", "--base", "no-such-branch"], project, tool_env, check=False)
    assert unknown.returncode == 1 and "git does not know the base" in unknown.stderr


def test_workflow_validates_against_the_github_schema() -> None:
    run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)], ROOT)


def test_workflow_has_no_medium_or_high_zizmor_finding() -> None:
    result = run(
        [str(BIN / "zizmor"), "--offline", "--min-severity", "medium", "--format", "json", str(WORKFLOW)],
        ROOT,
        check=False,
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_workflow_reports_before_failing_and_pins_actions() -> None:
    text = WORKFLOW.read_text()
    assert "carbon-budget report --base" in text and "continue-on-error: true" in text
    assert text.index("Post or update the report comment") < text.index("Fail when the gate failed")
    for line in text.splitlines():
        if "uses:" in line:
            assert "@" in line and len(line.split("@")[1].split()[0]) == 40, line


@pytest.mark.integration
def test_queued_experiments_land_in_one_store(project: Path, tool_env: dict[str, str]) -> None:
    for epochs in (2, 4):
        run(["dvc", "exp", "run", "--queue", "-S", f"train.epochs={epochs}"], project, tool_env)
    with (project.parent / "queue.log").open("w") as log:  # dvc queue start blocks while its output is a pipe
        run_queue = __import__("subprocess").run(
            ["dvc", "queue", "start", "-j", "2"], cwd=project, env=tool_env, stdout=log, stderr=log
        )
    assert run_queue.returncode == 0
    deadline = time.time() + 300
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], project, tool_env).stdout
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(2)
    assert status.count("Success") == 2, status
    with sqlite3.connect(project / "mlflow.db") as con:
        parents = con.execute(
            "select r.name from runs r where not exists"
            " (select 1 from tags t where t.run_uuid = r.run_uuid and t.key = 'mlflow.parentRunId')"
        ).fetchall()
        energy = con.execute("select count(*) from metrics where key = 'energy_kwh'").fetchone()[0]
    assert len(parents) == 2 and energy >= 2 * 6
    shown = run(["dvc", "exp", "show", "--no-pager", "--json"], project, tool_env).stdout
    assert "energy_kwh" in shown and "co2_kg" in shown and "model_size_mb" in shown and "test_accuracy" in shown


@pytest.mark.integration
def test_review_judges_the_base_with_its_own_stages_and_names_what_loosened(
    project: Path, tool_env: dict[str, str]
) -> None:
    """A pull request that takes train's record out of the gate's deps, then exempts train, never looks cheaper:
    the base's total is its own gate's, and what the change loosened is named in the verdict."""
    env = {**tool_env, "CARBON_BUDGET_WORKER": "off"}
    run(["dvc", "repro"], project, env)
    base = commit_all(project, env, "base figures")
    base_total = json.loads((project / "metrics/gate.json").read_text())["energy_kwh"]
    train = json.loads((project / "metrics/emissions/train.json").read_text())["energy_kwh"]
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    gate = pipeline["stages"]["gate"]
    gate["deps"] = [d for d in gate["deps"] if d != "metrics/emissions/train.json"]
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    run(["dvc", "repro"], project, env, check=False)  # whatever the gate says now, the report must not hide it
    commit_all(project, env, "train out of the gate's deps")

    document = json.loads(run(["carbon-budget", "report", "--base", base, "--format", "json"], project, env).stdout)
    assert document["totals"]["energy_kwh"]["base"] == pytest.approx(base_total, rel=1e-9)
    assert "| train |" in run(["carbon-budget", "report", "--base", base], project, env).stdout

    # then train stops declaring its record and is exempted: the head's gate counts it no more
    outs = pipeline["stages"]["train"]["outs"]
    pipeline["stages"]["train"]["outs"] = [o for o in outs if o != {"metrics/emissions/train.json": {"cache": False}}]
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    edit_params(project, budget={"exempt": {"train": "measured elsewhere"}})
    document = json.loads(run(["carbon-budget", "report", "--base", base, "--format", "json"], project, env).stdout)
    assert document["totals"]["energy_kwh"]["base"] == pytest.approx(base_total, rel=1e-9)
    loosened = {c["key"]: c for c in document["loosened"]}
    assert {"train", "budget.exempt.train"} <= set(loosened) and loosened["train"]["base"] == train
    assert document["verdict"]["loosened"] is True
    markdown = run(["carbon-budget", "report", "--base", base], project, env).stdout
    assert not markdown.splitlines()[1].startswith("## ✅"), markdown
    assert "- ⚠️ **train** no longer counted" in markdown and "**budget.exempt.train added**" in markdown
