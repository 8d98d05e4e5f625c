"""The plugin installed, not run from the checkout: into a fresh virtual environment that already holds a team's
stack (mlflow 3.16.1, dvc 3.66.1, no torch), it changes none of it, brings no torch and no top-level `pipeline`,
and `carbon-budget init` + `dvc repro` budget a small DVC project of the team's own.

Slow (the stack is installed from the package index, minutes the first time, faster once pip's cache holds it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import BIN, ROOT, project_files, run, tool_environment

pytestmark = pytest.mark.integration

REPO = ROOT
STACK = {"mlflow": "3.16.1", "dvc": "3.66.1"}
PIP_TIMEOUT_S = 1200.0

# the team's own pipeline: two Python stages that burn about a second of CPU each, so the records hold energy
PARAMS_YAML = """\
prepare:
  rows: 2000   # the team's own key
"""
DVC_YAML = """\
stages:
  prepare:
    cmd: python prepare.py
    deps: [prepare.py]
    params: [prepare.rows]
    outs: [data.txt]
  fit:
    cmd: python fit.py
    deps: [fit.py, data.txt]
    outs: [model.txt]
"""
PREPARE_PY = """\
import time

import yaml

rows = yaml.safe_load(open("params.yaml"))["prepare"]["rows"]
start = time.process_time()
while time.process_time() - start < 1.0:
    pass
with open("data.txt", "w") as out:
    out.write("x" * rows)
"""
FIT_PY = """\
import time

start = time.process_time()
while time.process_time() - start < 1.0:
    pass
with open("data.txt") as data, open("model.txt", "w") as out:
    out.write(data.read()[:10])
"""


@dataclass(frozen=True)
class Venv:
    root: Path
    before: dict[str, str]  # distribution versions before the project was installed
    after: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with this venv's bin first on PATH and nothing that would find the checkout or the dev venv."""
        env = {k: v for k, v in base.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != BIN]
        env["PATH"] = os.pathsep.join([str(self.bin), *path])
        env["VIRTUAL_ENV"] = str(self.root)
        return env

    def evaluate(self, code: str, cwd: Path) -> object:
        """What the expression `code` gives in this venv's Python, run from `cwd` (through JSON)."""
        script = f"import importlib.metadata, importlib.util, json, sysconfig; print(json.dumps({code}))"
        result = run([str(self.python), "-c", script], cwd, self.env(dict(os.environ)))
        return json.loads(result.stdout)


def installed_versions(python: Path, cwd: Path) -> dict[str, str]:
    code = "import importlib.metadata as m, json; print(json.dumps([(d.name, d.version) for d in m.distributions()]))"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    listed = json.loads(run([str(python), "-c", code], cwd, env).stdout)
    return {canonicalize_name(name): version for name, version in listed}


def pip(python: Path, *args: str, cwd: Path) -> None:
    """The dev environment's pip acting on `python`'s environment (a venv made without pip starts faster).

    --no-compile: byte-compiling the stack's ~150 distributions took most of the install's minute and a half here;
    Python compiles what the test imports as it goes.
    """
    run(
        [sys.executable, "-m", "pip", "--python", str(python), *args, "--quiet", "--no-compile"],
        cwd,
        timeout=PIP_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    scratch = tmp_path_factory.mktemp("plugin-install")
    # what a clone would hold: building in the checkout itself would leave build/ there
    source = scratch / "src"
    for name in project_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    root = scratch / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(root)], scratch)
    python = root / "bin" / "python"
    pip(python, "install", *(f"{name}=={version}" for name, version in STACK.items()), cwd=scratch)
    before = installed_versions(python, scratch)
    pip(python, "install", str(source), cwd=scratch)
    yield Venv(root, before, installed_versions(python, scratch))


def test_installs_beside_the_team_stack_without_changing_it(venv: Venv) -> None:
    assert {name: venv.after.get(name) for name in STACK} == STACK
    changed = {name: (old, venv.after.get(name)) for name, old in venv.before.items() if venv.after.get(name) != old}
    assert not changed, f"installing carbon-budget changed the team's environment: {changed}"
    assert "carbon-budget" in venv.after
    assert "torch" not in venv.after


def test_only_carbon_budget_is_importable(venv: Venv, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"  # not the checkout, so its pipeline/ cannot be found through the cwd
    outside.mkdir()
    found = venv.evaluate(
        "{n: importlib.util.find_spec(n) is not None for n in ('torch', 'pipeline', 'stages')}", outside
    )
    assert found == {"torch": False, "pipeline": False, "stages": False}
    site = Path(str(venv.evaluate("sysconfig.get_paths()['purelib']", outside)))
    assert not (site / "pipeline").exists() and not (site / "stages").exists()
    package = Path(str(venv.evaluate("__import__('carbon_budget').__file__", outside)))
    assert package.is_relative_to(site), f"carbon_budget imported from {package}, not the install"
    top_level = venv.evaluate(
        "sorted(n for n, d in importlib.metadata.packages_distributions().items() if 'carbon-budget' in d)",
        outside,
    )
    assert top_level == ["carbon_budget"]
    helped = run([str(venv.bin / "carbon-budget"), "--help"], outside, venv.env(dict(os.environ)))
    assert "init" in helped.stdout and "gate" in helped.stdout


def test_core_requirements_are_ranges_without_torch(venv: Venv, tmp_path: Path) -> None:
    requires = venv.evaluate("importlib.metadata.requires('carbon-budget')", tmp_path)
    assert isinstance(requires, list) and requires
    parsed = [Requirement(line) for line in requires]
    core = [r for r in parsed if r.marker is None or "extra" not in str(r.marker)]
    assert core, requires
    assert not [str(r) for r in core if r.name.lower() == "torch"]
    assert not [str(r) for r in core if any(s.operator in ("==", "===") for s in r.specifier)]


def test_init_and_dvc_repro_budget_a_team_project(venv: Venv, tmp_path: Path, cache_dir: Path) -> None:
    env = venv.env(tool_environment(tmp_path, cache_dir))
    repo = tmp_path / "team"
    repo.mkdir()
    for name, text in (
        ("params.yaml", PARAMS_YAML),
        ("dvc.yaml", DVC_YAML),
        ("prepare.py", PREPARE_PY),
        ("fit.py", FIT_PY),
    ):
        (repo / name).write_text(text)
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "team"],
    ):
        run(command, repo, env)
    assert shutil.which("dvc", path=env["PATH"]) == str(venv.bin / "dvc")

    run(["carbon-budget", "init"], repo, env)
    repro = run(["dvc", "repro"], repo, env)
    assert "gate: PASSED" in repro.stdout, repro.stdout
    for stage in ("prepare", "fit"):
        record = json.loads((repo / f"metrics/emissions/{stage}.json").read_text())
        assert record["status"] == "completed" and record["energy_kwh"] > 0, record

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["budget"]["energy_kwh"] = 1e-12
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    over = run(["dvc", "repro"], repo, env, check=False)
    output = over.stdout + over.stderr
    assert over.returncode != 0, output
    assert "budget.energy_kwh" in output and "Traceback" not in output, output
