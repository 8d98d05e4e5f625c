"""Read-only views of a project's dvc.yaml: its stages and what each declares as outputs.

The gate finds the records it accounts for here, and `carbon-budget track` finds the outputs a foreign stage
pays for, so dvc.yaml stays the one place that says what a stage produces.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from carbon_budget.config import section_value
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.files import parse_yaml
from carbon_budget.layout import record_path

DVC_FILE = Path("dvc.yaml")
OUTPUT_KINDS = ("outs", "metrics", "plots")


def read_stages(path: Path) -> dict[str, Any]:
    """The `stages:` mapping of a dvc.yaml; a CarbonBudgetError naming the file when it cannot be read."""
    try:
        document = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CarbonBudgetError(f"cannot read {path}: {exc}") from None
    stages = document.get("stages", {}) if isinstance(document, dict) else None
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
        return {str(item): item for item in data}
    if data is None:
        return {}  # the params section is absent or empty: DVC makes no stage of it
    raise CarbonBudgetError(f"{DVC_FILE}: cannot expand `foreach` of stage {stage!r} ({data!r})")


def generated_recorded_stages(stages: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The stages `foreach` makes (`NAME@KEY`) that write an emission record of their own. A gate stage cannot
    list them among its deps (they come and go with params), so the gate owes them from here."""
    names = []
    for name, stage in stages.items():
        if not isinstance(stage, dict) or "foreach" not in stage or not isinstance(stage.get("do"), dict):
            continue
        for key, item in _foreach_keys(name, stage["foreach"], params).items():
            generated = f"{name}@{key}"
            outputs = [p.replace("${key}", key).replace("${item}", str(item)) for p in declared_outputs(stage["do"])]
            if record_path(generated).as_posix() in outputs:
                names.append(generated)
    return names


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
