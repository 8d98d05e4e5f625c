"""The outbox: an execution frozen to files before MLflow is touched, and held while one process delivers it.

Stages write only files; the gate writes an execution snapshot to .carbon-budget/outbox/<execution_id>/ (the
records, their metric values and copies of their artifacts) before any MLflow call, so the verdict never waits on
MLflow. A snapshot leaves the outbox only when MLflow holds all of it (`delivery.deliver`); if the server is down,
`carbon-budget sync` replays it later.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.config import flatten
from carbon_budget.files import read_json, write_json
from carbon_budget.records.record import EmissionRecord

SNAPSHOT_FILE = "snapshot.json"
DELIVERY_LOCK = ".delivering.lock"


def read_snapshot(folder: Path) -> dict[str, Any]:
    return read_json(folder / SNAPSHOT_FILE)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _numbers(path: Path) -> dict[str, float]:
    """Numeric leaves of a metrics JSON file, flattened with dots (nested per-class reports stay out)."""
    flat = flatten(read_json(path))
    return {k: float(v) for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _within(work_dir: Path, listed: str) -> bool:
    """True when a file a record lists really lies in the project: a record's paths are checked to be relative
    and without `..`, but a symlink committed beside it could still point at ~/.ssh, and CI would log it."""
    return (work_dir / listed).resolve().is_relative_to(work_dir.resolve())


def write_snapshot(
    experiment: str,
    params: dict[str, Any],
    verdict: dict[str, Any],
    budgeted: list[EmissionRecord],
    others: list[EmissionRecord],
    work_dir: Path,
    execution_artifacts: list[Path],
    pictures: list[dict[str, str]],
) -> Path:
    """Freeze everything one execution publishes, before MLflow is touched. `pictures` are drawn after the runs
    are in (see `plots.draw_execution`)."""
    execution_id = uuid.uuid4().hex
    folder = work_dir / layout.OUTBOX_DIR / execution_id
    entries = []
    # the tool's own line is shown on the parent run (the verdict's stages), not as a child run of this execution
    for record in (r for r in [*budgeted, *others] if r.stage != layout.ITSELF):
        metrics: dict[str, float] = {}
        for metrics_file in (m for m in record.metrics_files if _within(work_dir, m)):
            metrics.update(_numbers(work_dir / metrics_file))
        copies = []
        for artifact in (a for a in record.artifacts if (work_dir / a).is_file() and _within(work_dir, a)):
            target = folder / "artifacts" / record.record_id / Path(artifact).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(work_dir / artifact, target)
            copies.append(target.relative_to(folder).as_posix())
        late = [a for a in record.artifacts if not (work_dir / a).is_file()]  # drawn after the runs are in
        entries.append(
            {"record": record.model_dump(mode="json"), "metrics": metrics, "artifacts": copies, "late_artifacts": late}
        )
    parent_copies = []
    for picture in (a for a in execution_artifacts if (work_dir / a).is_file()):
        target = folder / "artifacts" / "execution" / picture.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work_dir / picture, target)
        parent_copies.append(target.relative_to(folder).as_posix())
    write_json(
        folder / SNAPSHOT_FILE,
        {
            "execution_id": execution_id,
            "experiment": experiment,
            "git": {"commit": _git("rev-parse", "HEAD"), "branch": _git("rev-parse", "--abbrev-ref", "HEAD")},
            "dvc_experiment": os.environ.get("DVC_EXP_NAME", ""),
            "params": {k: str(v) for k, v in flatten(params).items()},
            "verdict": verdict,
            "budgeted_stages": [r.stage for r in budgeted if r.stage != layout.ITSELF],
            "entries": entries,
            "artifacts": parent_copies,
            "late_artifacts": [a.as_posix() for a in execution_artifacts if not (work_dir / a).is_file()],
            "work_dir": str(work_dir.resolve()),
            "pictures": pictures,
        },
    )
    return folder


def pending(work_dir: Path) -> list[Path]:
    """Snapshots not yet in MLflow, oldest first."""
    outbox = work_dir / layout.OUTBOX_DIR
    if not outbox.is_dir():
        return []
    folders = [p for p in outbox.iterdir() if (p / SNAPSHOT_FILE).is_file() and not _being_delivered(p)]
    return sorted(folders, key=lambda p: (p / SNAPSHOT_FILE).stat().st_mtime)


@contextmanager
def delivering(folder: Path) -> Iterator[None]:
    """Hold one snapshot for the whole of its delivery (runs, pictures, model, removal from the outbox).

    The worker finishes a delivery after the gate has its answer; a `carbon-budget sync` run meanwhile (a CI
    job syncing right after `dvc repro`) delivered the same snapshot a second time, logged the model twice and
    failed on the files the worker had just removed."""
    with (folder / DELIVERY_LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _being_delivered(folder: Path) -> bool:
    """True while another process holds the snapshot (or has just removed it)."""
    try:
        with (folder / DELIVERY_LOCK).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    return False
