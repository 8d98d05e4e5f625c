"""dvc.lock: what DVC recorded that each stage was built from (its code and its input files) when it last ran.

A record vouches for its outputs by hash, and its params are compared with params.yaml; neither says whether
the code has changed since. dvc.lock does: a stage whose script or library module differs from the one DVC
recorded has not been measured as it stands, however well its record and its outputs agree with each other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from carbon_budget import layout
from carbon_budget.config import read_params_file, section_value
from carbon_budget.errors import RecordError
from carbon_budget.files import parse_yaml
from carbon_budget.records.record import file_drift, file_md5

LOCK_FILE = Path("dvc.lock")


def directory_md5(path: Path) -> str | None:
    """DVC's hash of a directory (`<md5>.dir`): the md5 of its listing, a JSON list of every file's md5 and path
    relative to it, sorted by path, exactly as DVC 3 writes it into its cache; None when `path` is no directory."""
    if not path.is_dir():
        return None
    listing = [
        {"md5": file_md5(file), "relpath": file.relative_to(path).as_posix()}
        for file in sorted(path.rglob("*"), key=lambda p: p.relative_to(path).as_posix())
        if file.is_file()
    ]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def _input_drift(path: Path, md5: str) -> str | None:
    """How a file or directory input parted from the hash DVC recorded for it, or None if it did not."""
    if not md5.endswith(".dir"):
        return file_drift(path, md5)
    found = directory_md5(path)
    return "is missing" if found is None else ("has changed" if found != md5 else None)


@dataclass(frozen=True)
class Lock:
    stages: dict[str, Any]

    def changed_inputs(self, stage: str, root: Path) -> list[str]:
        """Why `stage`'s inputs today differ from those DVC recorded when it last ran it (none: they agree).

        Emission records among the inputs are left out: the gate judges each of them on its own, and a broken
        one should be named once, not again through every stage that reads it.
        """
        entry = self.stages.get(stage)
        if not isinstance(entry, dict):
            return [f"{LOCK_FILE} has no entry for stage {stage} (it never ran under `dvc repro`)"]
        reasons = []
        for dep in entry.get("deps") or []:
            if not isinstance(dep, dict):
                continue
            path, md5 = dep.get("path"), dep.get("md5")
            if not isinstance(path, str) or not isinstance(md5, str) or Path(path).parent == layout.RECORDS_DIR:
                continue
            drift = _input_drift(root / path, md5)
            if drift is not None:
                kind = "directory" if md5.endswith(".dir") else "input"
                reasons.append(f"its {kind} {path} {drift}" + (" since it ran" if drift == "has changed" else ""))
        return reasons + self._changed_params(entry, root)

    @staticmethod
    def _changed_params(entry: dict[str, Any], root: Path) -> list[str]:
        """The params DVC recorded for the stage's last run that differ from today's files: a project set up by
        `carbon-budget init` keeps no params in its records, and this is what ties its records to its params."""
        recorded = entry.get("params")
        if not isinstance(recorded, dict):
            return []
        reasons = []
        for file_name, values in recorded.items():
            if not isinstance(file_name, str) or not isinstance(values, dict):
                continue
            today = read_params_file(root / file_name, missing_ok=True)
            for key, value in values.items():
                now = section_value(today, str(key))
                if now != value:
                    shown = "" if isinstance(value, dict) else f" ({value!r} then, {now!r} now)"
                    reasons.append(f"{file_name} `{key}` differs from its value when DVC last ran it{shown}")
        return reasons

    def disowned_outputs(self, stage: str, root: Path, record_file: Path, outputs: dict[str, str]) -> list[str]:
        """Why the record is not the one DVC recorded for `stage`'s last run: the record file, or a file it says it
        paid for, has another md5 than dvc.lock's (a record copied from another run or commit, say). Files only: a
        directory's hash is DVC's own listing format."""
        entry = self.stages.get(stage)
        locked = {
            out["path"]: out["md5"]
            for out in (entry.get("outs") or [] if isinstance(entry, dict) else [])
            if isinstance(out, dict) and isinstance(out.get("path"), str) and isinstance(out.get("md5"), str)
        }
        reasons = []
        record_md5 = locked.get(record_file.as_posix())
        if record_md5 is not None and not record_md5.endswith(".dir") and file_drift(root / record_file, record_md5):
            reasons.append(f"it is not the record {LOCK_FILE} has for the last run of {stage} (its md5 differs)")
        for path, md5 in outputs.items():
            if path in locked and not locked[path].endswith(".dir") and locked[path] != md5:
                reasons.append(f"its output {path} is not the one {LOCK_FILE} recorded for that run (md5 differs)")
        return reasons


def load_lock(root: Path) -> Lock:
    """Read dvc.lock; missing or unreadable is a RecordError: without it nothing ties outputs to today's code."""
    path = root / LOCK_FILE
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(
            f"{LOCK_FILE} is missing: nothing says which code the outputs were built from"
            " (run `dvc repro`, and commit dvc.lock with metrics/)"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise RecordError(f"{LOCK_FILE} is unreadable ({exc}); restore it from git or rerun `dvc repro`") from None
    stages = raw.get("stages") if isinstance(raw, dict) else None
    if not isinstance(stages, dict):
        raise RecordError(f"{LOCK_FILE} lists no stages; restore it from git or rerun `dvc repro`")
    return Lock(stages)
