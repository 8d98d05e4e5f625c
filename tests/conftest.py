"""Shared fixtures. Integration tests copy the project into a temporary git repo and run the real tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


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
