"""DVC's own share of an execution: which ancestor process is DVC."""

from __future__ import annotations

import pytest

from carbon_budget.measure.dvc_share import _is_dvc, dvc_own_cpu_seconds


@pytest.mark.parametrize(
    ("cmdline", "is_dvc"),
    [
        (["/venv/bin/python", "/venv/bin/dvc", "repro"], True),
        (["dvc", "exp", "run"], True),
        (["python3", "-m", "dvc", "repro"], True),
        (["python", "-c", "from dvc.cli import main; main(['repro'])"], True),
        (["/bin/sh", "-c", "python -m stages.gate"], False),
        (["python", "-m", "stages.gate"], False),
        (["python", "-m", "pytest", "tests/test_dvc.py"], False),
        ([], False),
    ],
)
def test_which_ancestor_is_dvc(cmdline: list[str], is_dvc: bool) -> None:
    assert _is_dvc(cmdline) is is_dvc


def test_outside_dvc_there_is_no_share() -> None:
    assert dvc_own_cpu_seconds() is None  # pytest runs under no dvc
