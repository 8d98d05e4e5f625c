"""dvc.lock: what DVC recorded that each stage was built from (its code and its input files) when it last ran.

A record vouches for its outputs by hash, and its params are compared with params.yaml; neither says whether
the code has changed since. dvc.lock does: a stage whose script or library module differs from the one DVC
recorded has not been measured as it stands, however well its record and its outputs agree with each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from carbon_budget import layout
from carbon_budget.errors import RecordError
from carbon_budget.files import parse_yaml
from carbon_budget.records.record import file_drift

LOCK_FILE = Path("dvc.lock")


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
            if not isinstance(path, str) or not isinstance(md5, str) or md5.endswith(".dir"):
                continue  # a directory's hash is DVC's own listing format; no budgeted stage reads one
            if Path(path).parent == layout.RECORDS_DIR:
                continue
            drift = file_drift(root / path, md5)
            if drift is not None:
                reasons.append(f"its input {path} {drift}" + (" since it ran" if drift == "has changed" else ""))
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
