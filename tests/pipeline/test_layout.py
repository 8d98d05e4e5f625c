"""dvc.yaml, pipeline/layout.py and the repository agree."""

from __future__ import annotations

from pathlib import Path

import yaml

from carbon_budget.gate.accounting import GATE_STAGE, account
from carbon_budget.layout import STAGES_COMMAND, STAGES_LIST, STAGES_STAGE, record_path
from pipeline import layout
from tests.conftest import ROOT, declared, stage_definition

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# the pipeline's own stages, each a script of stages/; the plugin's stage list (carbon_stages) runs no project code
DVC = {name: body for name, body in STAGES.items() if name != STAGES_STAGE}


def test_stages_in_order() -> None:
    assert list(STAGES) == [STAGES_STAGE, "preprocess", "train", "evaluate", "distill", "export", "gate"]


def test_a_stage_added_or_removed_reruns_the_gate() -> None:
    """DVC refuses dvc.yaml as a dependency; the list of stages, rewritten on every repro, stands in for it."""
    assert STAGES[STAGES_STAGE] == {
        "cmd": STAGES_COMMAND,
        "always_changed": True,
        "outs": [{STAGES_LIST.as_posix(): {"cache": False}}],
    }
    assert STAGES_LIST.as_posix() in STAGES[GATE_STAGE]["deps"]


def test_every_stage_writes_its_record_and_the_gate_reads_them_all() -> None:
    for stage in DVC:
        name = layout.distill_stage("${key}") if "foreach" in DVC[stage] else stage
        assert record_path(name).as_posix() in declared(stage)
        assert f"stages/{stage}.py" in stage_definition(stage)["deps"]
    # students are stages made from params, so the gate learns of them from params (tests/pipeline/test_distill.py)
    assert account(ROOT, {}).recorded == [s for s in DVC if s not in (GATE_STAGE, "distill")]


def test_distillation_paths_are_declared() -> None:
    assert DVC["distill"]["foreach"] == "${distill.students}"
    for path in (
        layout.student_model("${key}"),
        layout.distill_metrics("${key}"),
        layout.distill_curves("${key}"),
    ):
        assert path.as_posix() in declared("distill"), path
    # export depends on the folder of trained models, so DVC orders it after every student params define
    assert layout.TRAINED_DIR.as_posix() in DVC["export"]["deps"]
    assert layout.MODEL.parent == layout.TRAINED_DIR


def test_layout_paths_are_declared() -> None:
    every = set().union(*(declared(s) for s in DVC))
    for path in (
        layout.PROCESSED_DATA,
        layout.MODEL,
        layout.EXPORT_DIR,
        layout.TRAIN_METRICS,
        layout.EVALUATE_METRICS,
        layout.EXPORT_METRICS,
        layout.GATE_METRICS,
        layout.TRAINING_CURVES,
        layout.CONFUSION,
        layout.PER_CLASS_REPORT,
        layout.ENERGY_PER_STAGE,
        layout.EFFICIENCY,
    ):
        assert path.as_posix() in every, path


def test_pictures_are_drawn_after_the_execution_not_declared_as_outputs() -> None:
    every = set().union(*(declared(s) for s in DVC))
    for picture in (layout.TRAINING_CURVES_PICTURE, layout.CONFUSION_PICTURE, layout.ENERGY_PICTURE):
        assert picture.as_posix() not in every  # DVC would delete and demand them before the worker draws them


def test_records_are_not_cached_so_git_keeps_them_for_base_comparisons() -> None:
    for stage in DVC:
        for entry in stage_definition(stage)["outs"]:
            if isinstance(entry, dict) and next(iter(entry)).startswith("metrics/"):
                assert next(iter(entry.values())) == {"cache": False}


PACKAGES = ("carbon_budget", "pipeline", "stages")
# The detached MLflow publisher a stage starts: what it does never reaches a stage's outputs, so a change to the
# publishing code must not rerun training. Every other module a stage imports or launches (`-m pipeline.ddp_worker`
# under torchrun) is code whose change can change the stage's result.
DETACHED = {"carbon_budget.publish.service"}


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


# The package root names its public API lazily (PEP 562): a module in this table runs only when a file imports its
# name from the root, so the table's strings are no import of the root itself.
ROOT_INIT = ROOT / "carbon_budget" / "__init__.py"


def _modules_used(path: Path) -> set[str]:
    """Project modules a file imports (at the top or inside a function) or names as a string to run (`-m X`)."""
    import ast

    import carbon_budget

    def run_time(tree: ast.AST) -> list[ast.AST]:
        """Every node but those under `if TYPE_CHECKING:`, which never run."""
        nodes, todo = [], [tree]
        while todo:
            node = todo.pop()
            nodes.append(node)
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                todo.extend(node.orelse)
                continue
            todo.extend(ast.iter_child_nodes(node))
        return nodes

    found: set[str] = set()
    for node in run_time(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
            if node.module == "carbon_budget":  # `from carbon_budget import TrainingBudget` runs its module
                found.update(carbon_budget._LAZY[a.name] for a in node.names if a.name in carbon_budget._LAZY)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value not in DETACHED
            and path != ROOT_INIT
        ):
            found.add(node.value)  # kept below only when it names a project module
    found = {name for name in found if name.split(".")[0] in PACKAGES}
    return {name for name in found if "." not in name or _module_file(name) or _module_file(name.rpartition(".")[0])}


def import_closure(script: Path) -> set[str]:
    """Every project module file the script's process (and the processes it launches) runs, relative to ROOT."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _modules_used(path):
            parts = name.split(".")
            todo.extend(f for i in range(1, len(parts) + 1) if (f := _module_file(".".join(parts[:i]))))
    return {p.relative_to(ROOT).as_posix() for p in seen}


def test_each_stage_depends_on_every_module_it_runs() -> None:
    """Change any module a stage runs and DVC reruns that stage (and no module it does not run is listed). Package
    __init__ files hold a docstring and the version only, and are left out."""
    for stage in DVC:
        code = {p for p in import_closure(ROOT / f"stages/{stage}.py") if not p.endswith("__init__.py")}
        listed = {d for d in stage_definition(stage)["deps"] if isinstance(d, str) and d.endswith(".py")}
        assert listed == code, f"{stage}: missing {sorted(code - listed)}, not run {sorted(listed - code)}"


def test_package_inits_hold_no_code() -> None:
    """Package __init__ files are in no stage's deps, so they hold no code that could change a stage's result. The
    root's lazy loader is the one exception: at import it imports the errors alone, and each public name runs only
    the module that defines it (counted where a stage imports the name, see `_modules_used`)."""
    import ast

    body = ast.parse(ROOT_INIT.read_text(encoding="utf-8")).body
    eager = {n.module for n in body if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("carbon_")}
    assert eager == {"carbon_budget.errors"}
    for init in ROOT.glob("*/**/__init__.py"):
        if init.parts[len(ROOT.parts)] not in PACKAGES or init == ROOT_INIT:
            continue
        body = ast.parse(init.read_text(encoding="utf-8")).body
        code = [n for n in body if not isinstance(n, ast.Expr | ast.Assign)]
        assert not code, f"{init}: code in a package __init__ is in no stage's deps"
