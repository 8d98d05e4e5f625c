"""Read-only views of a project's dvc.yaml: its stages and what each declares as outputs.

The gate finds the records it accounts for here, and `carbon-budget track` finds the outputs a foreign stage
pays for, so dvc.yaml stays the one place that says what a stage produces.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

import yaml

from carbon_budget.config import PARAMS_FILE, read_params_file, section_value
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.files import parse_yaml

DVC_FILE = Path("dvc.yaml")
OUTPUT_KINDS = ("outs", "metrics", "plots")
TEMPLATE = re.compile(r"\$\{\s*([^{}\s]+)\s*\}")  # DVC's `${name}`


def read_document(path: Path) -> dict[str, Any]:
    """A dvc.yaml as plain data; a CarbonBudgetError naming the file when it cannot be read."""
    try:
        document = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CarbonBudgetError(f"cannot read {path}: {exc}") from None
    if not isinstance(document, dict):
        raise CarbonBudgetError(f"{path}: expected a mapping with `stages:` at the top level")
    return document


def read_stages(path: Path, document: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `stages:` mapping of a dvc.yaml as written (templates unexpanded)."""
    stages = (read_document(path) if document is None else document).get("stages", {})
    if not isinstance(stages, dict):
        raise CarbonBudgetError(f"{path}: expected a mapping of stages under `stages:`")
    return stages


def entry_path(entry: Any) -> str:
    """The path of a deps/outs entry, written either as `path` or as `path: {options}`."""
    return str(next(iter(entry))) if isinstance(entry, dict) and len(entry) == 1 else str(entry)


def declared_outputs(stage: Any) -> list[str]:
    """Every path a stage declares it produces (outs, metrics and plots), in dvc.yaml order."""
    paths: list[str] = []
    for kind in OUTPUT_KINDS:
        entries = stage.get(kind) if isinstance(stage, dict) else None
        if isinstance(entries, list):
            paths.extend(entry_path(entry) for entry in entries)
    return paths


def running_stage_outputs(exclude: Path) -> list[Path]:
    """The outputs of the stage DVC is running now (DVC_STAGE, relative to its working directory), so a tracked
    command's record can name what it paid for; none outside `dvc repro` or for a generated stage."""
    addressing = os.environ.get("DVC_STAGE", "")
    name = addressing.rsplit(":", 1)[-1]
    if not name or "@" in name or not DVC_FILE.is_file():
        return []
    outputs = declared_outputs(read_stages(DVC_FILE).get(name))
    return [Path(p) for p in outputs if Path(p) != exclude]


def _foreach_keys(stage: str, data: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The keys DVC gives the stages `foreach` makes, and the item of each: a mapping's keys, a simple list's
    values, or a list of mappings' indexes. `${dotted.name}` is looked up in params.yaml, as DVC does."""
    if isinstance(data, str) and data.startswith("${") and data.endswith("}"):
        data = section_value(params, data[2:-1].strip())
    if isinstance(data, dict):
        return {str(key): value for key, value in data.items()}
    if isinstance(data, list):
        if any(isinstance(item, dict | list) for item in data):
            return {str(index): item for index, item in enumerate(data)}
        return {_text(item): item for item in data}
    if data is None:
        return {}  # the params section is absent or empty: DVC makes no stage of it
    raise CarbonBudgetError(f"{DVC_FILE}: cannot expand `foreach` of stage {stage!r} ({data!r})")


def _text(value: Any) -> str:
    """A value as DVC writes it into a name or a path: booleans in YAML's spelling."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _interpolated(value: Any, context: dict[str, Any]) -> Any:
    """`${name}` in a stage's strings replaced as DVC does: a whole-string reference keeps the value's type; a name
    the context lacks stays as written (DVC itself refuses such a file, and says so better)."""
    if isinstance(value, dict):
        return {_interpolated(k, context): _interpolated(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolated(v, context) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = TEMPLATE.fullmatch(value)
    if whole and section_value(context, whole.group(1)) is not None:
        return section_value(context, whole.group(1))

    def one(match: re.Match[str]) -> str:
        found = section_value(context, match.group(1))
        return match.group(0) if found is None else _text(found)

    return TEMPLATE.sub(one, value)


def resolved_stages(root: Path) -> dict[str, dict[str, Any]]:
    """Every stage DVC makes of the project's dvc.yaml, by the name dvc.lock gives it (`train`, `sweep@0.1`,
    `grid@lr0-small`), with its paths resolved against params.yaml as DVC resolves them.

    The plain forms (stages, and `foreach` over a list, a mapping or a params section) are expanded here; a file
    with `vars:` or a `matrix:` stage is resolved by DVC's own parser, whose import costs a tenth of a second that
    the gate saves on every other project. A file DVC cannot resolve is a CarbonBudgetError naming it."""
    path = root / DVC_FILE
    document = read_document(path)
    stages = read_stages(path, document)
    if "vars" in document or any(isinstance(stage, dict) and "matrix" in stage for stage in stages.values()):
        return _resolved_by_dvc(root, document)
    params = read_params_file(root / PARAMS_FILE, missing_ok=True)
    resolved: dict[str, dict[str, Any]] = {}
    for name, stage in stages.items():
        if isinstance(stage, dict) and "foreach" in stage and isinstance(stage.get("do"), dict):
            for key, item in _foreach_keys(name, stage["foreach"], params).items():
                resolved[f"{name}@{key}"] = _interpolated(stage["do"], {**params, "key": key, "item": item})
        else:
            resolved[name] = _interpolated(stage, params) if isinstance(stage, dict) else {}
    return resolved


def _resolved_by_dvc(root: Path, document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """DVC's own templating (`vars:` files and mappings, `matrix:`), run on the file as read, outside any repo."""
    from dvc.fs import LocalFileSystem
    from dvc.parsing import DataResolver

    class FilesOnly:
        """What DataResolver needs of a repo: a file system to read `vars` files from, and no parsing options."""

        fs = LocalFileSystem()
        config: ClassVar[dict[str, Any]] = {}

    wdir = os.path.relpath(root, Path.cwd())
    try:
        stages = DataResolver(FilesOnly(), "" if wdir == os.curdir else wdir, document).resolve().get("stages", {})
    except Exception as exc:  # DVC's ResolveError and its relatives carry the reason
        raise CarbonBudgetError(f"{root / DVC_FILE}: DVC cannot resolve its templating ({exc})") from None
    return {str(name): stage if isinstance(stage, dict) else {} for name, stage in stages.items()}


def upstream_stages(stages: dict[str, Any], name: str) -> list[str]:
    """The stages DVC runs before `name`: those producing its deps, and theirs, in dvc.yaml order. A dep counts
    when it is an output or lies inside one, or holds one (a folder)."""
    producers = {path: stage for stage, body in stages.items() for path in declared_outputs(body)}

    def makers(stage: str) -> set[str]:
        body = stages.get(stage)
        deps = [entry_path(d) for d in (body.get("deps") or [])] if isinstance(body, dict) else []
        found = set()
        for dep in deps:
            for output, producer in producers.items():
                if (
                    output == dep
                    or output.startswith(dep.rstrip("/") + "/")
                    or dep.startswith(output.rstrip("/") + "/")
                ):
                    found.add(producer)
        return found - {stage}

    seen: set[str] = set()
    todo = list(makers(name))
    while todo:
        stage = todo.pop()
        if stage not in seen:
            seen.add(stage)
            todo.extend(makers(stage) - seen)
    return [stage for stage in stages if stage in seen]
