"""The plugin's shape: imports point one way, from the CLI down to records and measurement, and the plugin never
reaches into the reference pipeline (a team installs `carbon_budget` alone)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PLUGIN = ROOT / "carbon_budget"
# Low to high: a module may import its own layer and the ones before it, never one after it (lazy imports count).
LAYERS = [
    {"errors", "files", "layout", "grid", "config"},
    {"records", "intensity"},
    {"measure"},
    {"gate"},
    {"publish"},
    {"report"},
    {"scaffold"},
    {"integrations"},
    {"entry"},
    {"cli"},
]


def layer(module: str) -> int:
    """The layer of `carbon_budget.X...` (X a subpackage or a top-level module)."""
    part = module.split(".")[1] if "." in module else ""
    return next(index for index, names in enumerate(LAYERS) if part in names)


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def plugin_modules() -> dict[str, Path]:
    found = {}
    for path in PLUGIN.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] != "__init__":
            found[".".join(parts)] = path
    return found


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, path in plugin_modules().items():
        for name in imported(path):
            if name.startswith("carbon_budget.") and layer(name) > layer(module):
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_plugin_never_imports_the_reference_pipeline() -> None:
    leaks = [
        f"{module} imports {name}"
        for module, path in plugin_modules().items()
        for name in imported(path)
        if name.split(".")[0] in ("pipeline", "stages")
    ]
    assert not leaks, "\n".join(leaks)


def test_every_plugin_module_has_a_layer() -> None:
    for module in plugin_modules():
        layer(module)  # StopIteration names a module no layer claims
