"""Shared fixtures and helpers, the one module test files import from. Integration tests copy the project into a
temporary git repo and run the real tools."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from carbon_budget.records.record import EmissionRecord, Hardware, Methods, save_record

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# intensity series as each provider documents its answer (README.md there says where each comes from)
GRID = ROOT / "tests" / "fixtures" / "grid"


def project_files() -> list[str]:
    """Files a clone would have (tracked, or new and not ignored), so tests see uncommitted work too."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [f for f in out if (ROOT / f).is_file()]


def run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def stages_run(output: str) -> list[str]:
    """The stages `dvc repro` ran, as its output names them, less `carbon_stages`: it runs on every repro (always
    changed) to list the pipeline's stages for the gate, and changes nothing else."""
    import re

    from carbon_budget.layout import STAGES_STAGE

    return [name for name in re.findall(r"Running stage '([^']+)'", output) if name != STAGES_STAGE]


def stale_stages(repo: Path, env: dict[str, str]) -> dict[str, object]:
    """`dvc status --json`, less `carbon_stages`, which DVC always lists as changed."""
    import json

    from carbon_budget.layout import STAGES_STAGE

    status = json.loads(run(["dvc", "status", "--json"], repo, env).stdout or "{}")
    status.pop(STAGES_STAGE, None)
    return dict(status)


def edit_params(repo: Path, **sections: dict[str, Any]) -> None:
    """Merge values into params.yaml section by section, as a user would edit it."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(autouse=True)
def stop_workers_started_by_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Background workers idle out by themselves after minutes; each test stops the ones it started, so their
    after-work (pictures, model logging) never competes with the next test's timings."""
    yield
    import psutil

    base = str(tmp_path_factory.getbasetemp())
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "carbon_budget.publish.service" in cmdline and any(base in part for part in cmdline):
            process.terminate()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hardware-plan cache for the whole session, as one machine would have."""
    return tmp_path_factory.mktemp("carbon-budget-cache")


def tool_environment(scratch: Path, cache_dir: Path) -> dict[str, str]:
    """The environment a user's shell would give dvc: this venv first on PATH, no tracking server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "CODECARBON_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        DVC_SITE_CACHE_DIR=str(scratch / "dvc-site-cache"),
        CARBON_BUDGET_CACHE_DIR=str(cache_dir),
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def tool_env(tmp_path: Path, cache_dir: Path) -> dict[str, str]:
    return tool_environment(tmp_path, cache_dir)


def copy_project(repo: Path, env: dict[str, str]) -> Path:
    """A copy of this project in a fresh git repo, with tiny params so a full `dvc repro` takes seconds."""
    for name in project_files():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    run(["git", "init", "-q"], repo, env)
    edit_params(repo, train={"epochs": 3}, budget={"min_accuracy": 0.5}, export={"inference_seconds": 0.3})
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "base"], repo, env)
    return repo


@pytest.fixture
def project(tmp_path: Path, tool_env: dict[str, str]) -> Iterator[Path]:
    yield copy_project(tmp_path / "project", tool_env)


def record(
    stage: str,
    energy_kwh: float,
    co2_kg: float | None = None,
    duration_s: float = 1.0,
    cpu: str = "estimated:cpu_load_x_tdp",
) -> EmissionRecord:
    """A completed record whose figures reconcile: parts add up, CO2 is energy x 400 g/kWh unless given."""
    return EmissionRecord(
        record_id=f"id-{stage}",
        stage=stage,
        status="completed",
        started_at="2026-01-01T00:00:00+00:00",
        ended_at="2026-01-01T00:00:01+00:00",
        duration_s=duration_s,
        energy_kwh=energy_kwh,
        cpu_energy_kwh=energy_kwh / 2,
        gpu_energy_kwh=0.0,
        ram_energy_kwh=energy_kwh / 2,
        co2_kg=energy_kwh * 0.4 if co2_kg is None else co2_kg,
        carbon_intensity_g_per_kwh=400.0,
        carbon_intensity_source="test",
        country_iso_code="USA",
        pue=1.0,
        tracking_mode="process",
        methods=Methods(cpu=cpu, gpu="none", ram="estimated:ram_rule"),
        hardware=Hardware(cpu_model="cpu", cpu_count=2, gpu_model="", gpu_count=0, ram_total_gb=8.0),
        codecarbon_version="3.3.2",
    )


FOREIGN_DVC = """\
stages:
  sort:
    cmd: carbon-budget track --stage sort -- sort in.txt -o out.txt
  gate:
    cmd: ./their-own-check
  carbon_gate:
    cmd: carbon-budget gate
    deps:
      - metrics/emissions/sort.json
"""


def foreign_project(root: Path, budget: str) -> Path:
    """A DVC project that is not this pipeline, as `dvc repro` leaves it: one measured stage, a `gate` stage of
    its own, params with keys of its own and, when given, a `budget:` section."""
    (root / "dvc.yaml").write_text(FOREIGN_DVC)
    if budget:  # their own `gate` stage is measured by nothing: exempt by name, or the gate fails closed on it
        budget = budget.replace("budget:\n", "budget:\n  exempt: {gate: their own check}\n", 1)
    (root / "params.yaml").write_text(f"train:\n  lr: fast   # the project's own keys are not ours to judge\n{budget}")
    save_record(root / "metrics/emissions/sort.json", record("sort", 0.001))
    # what `dvc repro` leaves: the gate refuses records that no dvc.lock ties to code (tests/e2e/test_bad_input.py)
    (root / "dvc.lock").write_text("schema: '2.0'\nstages:\n  sort:\n    cmd: sort in.txt -o out.txt\n")
    return root


def mlflow_runs(db: Path) -> tuple[list[str], list[str], set[str]]:
    """(parent run ids, child run ids, metric keys logged on children) straight from the store."""
    with sqlite3.connect(db) as con:
        runs = [r[0] for r in con.execute("select run_uuid from runs")]
        children = [r[0] for r in con.execute("select run_uuid from tags where key = 'mlflow.parentRunId'")]
        child_keys = {
            r[0]
            for r in con.execute(
                "select distinct m.key from metrics m join tags t on t.run_uuid = m.run_uuid"
                " where t.key = 'mlflow.parentRunId'"
            )
        }
    return [r for r in runs if r not in children], children, child_keys


def stage_definition(stage: str) -> dict[str, Any]:
    """A stage of the reference pipeline's dvc.yaml; for a `foreach` stage (distill), the template each of its
    stages is made from."""
    body: dict[str, Any] = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    return body.get("do", body)


def declared(stage: str) -> set[str]:
    """The paths dvc.yaml declares a reference-pipeline stage writes (outs, metrics, plots)."""
    paths: set[str] = set()
    for kind in ("outs", "metrics", "plots"):
        for entry in stage_definition(stage).get(kind, []):
            paths.add(entry if isinstance(entry, str) else next(iter(entry)))
    return paths
