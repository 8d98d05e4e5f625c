"""Read-only views of a project's dvc.yaml: its stages and what each declares as outputs.

The gate finds the records it accounts for here, and `carbon-budget track` finds the outputs a foreign stage
pays for, so dvc.yaml stays the one place that says what a stage produces.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError
from pipeline.files import parse_yaml

DVC_FILE = Path("dvc.yaml")
OUTPUT_KINDS = ("outs", "metrics", "plots")


def read_stages(path: Path) -> dict[str, Any]:
    """The `stages:` mapping of a dvc.yaml; a PipelineError naming the file when it cannot be read."""
    try:
        document = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineError(f"cannot read {path}: {exc}") from None
    stages = document.get("stages", {}) if isinstance(document, dict) else None
    if not isinstance(stages, dict):
        raise PipelineError(f"{path}: expected a mapping of stages under `stages:`")
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
