"""The public surface: what a team imports from `carbon_budget` itself, that importing it stays light, that type
checkers see the names, and that the version and licence the distribution declares are the package's."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import carbon_budget
from carbon_budget import (
    BudgetExceeded,
    CarbonBudgetError,
    CommandFailed,
    EmissionRecord,
    ForecastOverrun,
    MeasurementError,
    ParamsError,
    RecordError,
    StageAborted,
    StageInterrupted,
    StageRun,
    TrainingBudget,
    load_record,
    stage_main,
)
from tests.conftest import BIN, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_names_a_team_needs_come_from_the_root_and_are_the_defining_modules_own() -> None:
    from carbon_budget import entry, errors
    from carbon_budget.measure import stage, training
    from carbon_budget.records import record

    assert TrainingBudget is training.TrainingBudget and StageRun is stage.StageRun and stage_main is entry.stage_main
    assert EmissionRecord is record.EmissionRecord and load_record is record.load_record
    raised = (BudgetExceeded, ForecastOverrun, StageAborted, StageInterrupted, CommandFailed)
    assert all(issubclass(error, CarbonBudgetError) for error in (*raised, ParamsError, RecordError, MeasurementError))
    assert issubclass(ForecastOverrun, StageAborted) and ForecastOverrun is errors.ForecastOverrun


def test_every_name_in_all_resolves_and_dir_lists_it() -> None:
    for name in carbon_budget.__all__:
        assert getattr(carbon_budget, name) is not None, name
    assert set(carbon_budget.__all__) <= set(dir(carbon_budget))
    assert len(set(carbon_budget.__all__)) == len(carbon_budget.__all__)


def test_an_unknown_name_is_an_attribute_error_and_submodules_still_import() -> None:
    try:
        carbon_budget.TrainingBudgett  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "TrainingBudgett" in str(exc)
    else:
        raise AssertionError("a misspelt name resolved")
    assert importlib.import_module("carbon_budget.layout").__name__ == "carbon_budget.layout"


def test_importing_the_root_pulls_in_no_library_but_the_standard_one() -> None:
    """`carbon-budget --help`, the gate and a team's own `import carbon_budget` never pay for torch or mlflow, nor
    for pydantic (0.1 s): reading an error class is free, the other names import their module on first use."""
    check = (
        "import sys; before = set(sys.modules); import carbon_budget; carbon_budget.ForecastOverrun; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['carbon_budget']", done.stdout


def test_type_checkers_see_the_lazy_names(tmp_path: Path) -> None:
    """mypy reads the names from the `TYPE_CHECKING` imports (not as Any), and a misspelt one is an error."""
    snippet = tmp_path / "uses_api.py"
    lazy = ("TrainingBudget", "StageRun", "stage_main", "EmissionRecord", "load_record")
    snippet.write_text(
        f"import carbon_budget\nfrom carbon_budget import {', '.join(lazy)}\n"
        + "".join(f"reveal_type({name})\n" for name in lazy)
        + "carbon_budget.TrainingBudgett\n"
    )
    config = ["--config-file", str(ROOT / "pyproject.toml"), "--follow-imports=silent"]
    done = subprocess.run(
        [str(BIN / "mypy"), *config, "--cache-dir", str(tmp_path / "cache"), str(snippet)],
        env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    revealed = [line for line in done.stdout.splitlines() if "Revealed type" in line]
    assert len(revealed) == len(lazy) and not any('"Any"' in line for line in revealed), done.stdout
    assert 'Module has no attribute "TrainingBudgett"' in done.stdout, done.stdout


def test_the_version_and_licence_are_the_distributions() -> None:
    assert carbon_budget.__version__ == PYPROJECT["version"]
    assert PYPROJECT["license"] == "Apache-2.0" and PYPROJECT["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence  # the full text, not a pointer to it
