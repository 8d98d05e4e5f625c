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


def _listing(path: Path) -> dict[str, str]:
    """Every file under a directory, by path relative to it, with its md5."""
    return {file.relative_to(path).as_posix(): file_md5(file) for file in path.rglob("*") if file.is_file()}


def _listing_md5(listing: dict[str, str]) -> str:
    """DVC's hash of a directory from its listing (`<md5>.dir`): the md5 of a JSON list of every file's md5 and
    path, sorted by path, exactly as DVC 3 writes it into its cache."""
    entries = [{"md5": listing[rel], "relpath": rel} for rel in sorted(listing)]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def directory_md5(path: Path) -> str | None:
    """DVC's hash of a directory, None when `path` is no directory."""
    return _listing_md5(_listing(path)) if path.is_dir() else None


def _cached_listing(root: Path, md5: str) -> dict[str, str] | None:
    """The file listing DVC keeps in its cache for a directory hash (relative path -> md5), when it has one: DVC
    stores it for the directories stages output, not for those they only read."""
    listing = root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    try:
        entries = json.loads(listing.read_text(encoding="utf-8"))
        return {str(e["relpath"]): str(e["md5"]) for e in entries}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _input_drift(root: Path, path: str, dep: dict[str, Any], known: dict[str, str]) -> str | None:
    """How a file or directory input parted from the hash DVC recorded for it, or None if it did not.

    For a directory the reason names the files inside it that went missing or changed, as far as anything recorded
    says what they were: DVC's cached listing of the directory, else the md5s dvc.lock holds for other stages'
    outputs inside it (`known`, project path -> md5), else the number of files DVC counted."""
    md5 = str(dep["md5"])
    if not md5.endswith(".dir"):
        return file_drift(root / path, md5)
    if not (root / path).is_dir():
        return "is missing"
    today = _listing(root / path)  # hashed once: for the directory's hash and for naming what drifted
    if _listing_md5(today) == md5:
        return None
    cached = _cached_listing(root, md5)
    expected = (
        cached if cached is not None else {p[len(path) + 1 :]: d for p, d in known.items() if p.startswith(f"{path}/")}
    )
    details = [
        f"{path}/{rel} {'is missing' if rel not in today else 'has changed'}"
        for rel, digest in sorted(expected.items())
        if today.get(rel) != digest
    ]
    recorded = len(cached) if cached is not None else dep.get("nfiles")
    if isinstance(recorded, int) and len(today) != recorded:
        details.append(f"{len(today)} files where DVC counted {recorded}")
    return "has changed since it ran" + (f" ({'; '.join(details)})" if details else "")


def _outs(entry: Any) -> dict[str, str]:
    """A dvc.lock stage entry's outputs, path -> md5 (malformed items skipped: the checks then find them missing)."""
    return {
        out["path"]: out["md5"]
        for out in (entry.get("outs") or [] if isinstance(entry, dict) else [])
        if isinstance(out, dict) and isinstance(out.get("path"), str) and isinstance(out.get("md5"), str)
    }


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
        known = self._output_md5s()
        for dep in entry.get("deps") or []:
            if not isinstance(dep, dict):
                continue
            path, md5 = dep.get("path"), dep.get("md5")
            if not isinstance(path, str) or not isinstance(md5, str) or Path(path).parent == layout.RECORDS_DIR:
                continue
            drift = _input_drift(root, path, dep, known)
            if drift is not None:
                kind = "directory" if md5.endswith(".dir") else "input"
                reasons.append(f"its {kind} {path} {drift}" + (" since it ran" if drift == "has changed" else ""))
        return reasons + self._changed_params(entry, root)

    def _output_md5s(self) -> dict[str, str]:
        """Every output dvc.lock records, any stage (path -> md5): what a directory input was made of."""
        return {path: md5 for entry in self.stages.values() for path, md5 in _outs(entry).items()}

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
        paid for, has another md5 than dvc.lock's (a record copied from another run or commit, say). A directory
        output is compared through the files the record hashed inside it, listed the way DVC hashes a directory."""
        locked = _outs(self.stages.get(stage))
        reasons = []
        record_md5 = locked.get(record_file.as_posix())
        if record_md5 is not None and not record_md5.endswith(".dir") and file_drift(root / record_file, record_md5):
            reasons.append(f"it is not the record {LOCK_FILE} has for the last run of {stage} (its md5 differs)")
        for path, md5 in outputs.items():
            if path in locked and not locked[path].endswith(".dir") and locked[path] != md5:
                reasons.append(f"its output {path} is not the one {LOCK_FILE} recorded for that run (md5 differs)")
        for path, md5 in ((p, m) for p, m in locked.items() if m.endswith(".dir")):
            inside = {o[len(path) + 1 :]: m for o, m in outputs.items() if o.startswith(path + "/")}
            if inside and _listing_md5(inside) != md5:
                reasons.append(
                    f"its outputs in {path}/ are not the ones {LOCK_FILE} recorded for that run (the directory's"
                    " hash differs)"
                )
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
