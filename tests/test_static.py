"""The code keeps its own rules: ruff and mypy, as configured in pyproject.toml."""

from __future__ import annotations

from tests.conftest import BIN, ROOT, run


def test_ruff_finds_nothing() -> None:
    run([str(BIN / "ruff"), "check", "--quiet", "."], ROOT)


def test_mypy_finds_nothing() -> None:
    run([str(BIN / "mypy"), "carbon_budget", "pipeline", "stages"], ROOT)
