"""DVC's own share of an execution: the CPU time of the `dvc` process running a stage, which no stage caused.

A module of its own, light to import: the gate reads it on every call, and the gate answers in well under a
second.
"""

from __future__ import annotations

import os
from typing import Any


def _is_dvc(cmdline: list[str]) -> bool:
    """`dvc ...`, `python -m dvc ...` or a program running DVC's CLI in-process (`from dvc.cli import main`)."""
    head = [os.path.basename(arg) for arg in cmdline[:2]]
    return "dvc" in head or cmdline[1:3] == ["-m", "dvc"] or any("dvc.cli" in arg for arg in cmdline[1:3])


def _dvc_ancestor() -> Any:
    """The `dvc` process running this one (a psutil.Process), or None."""
    import psutil

    for ancestor in psutil.Process().parents():
        if _is_dvc(ancestor.cmdline()):
            return ancestor
    return None


def dvc_own_cpu_seconds() -> float | None:
    """CPU-seconds the `dvc` process running this one has spent itself so far (its children apart), or None when
    no ancestor is DVC: DVC's own share of an execution, which no stage's record holds and no stage caused."""
    import psutil

    try:
        ancestor = _dvc_ancestor()
        if ancestor is None:
            return None
        times = ancestor.cpu_times()
        return float(times.user + times.system)
    except psutil.Error:
        return None


def dvc_identity() -> str | None:
    """ "<pid>:<start time>" of the `dvc` process running this one, or None: names that process even after its pid
    is reused (see `alive`)."""
    import psutil

    try:
        ancestor = _dvc_ancestor()
        return None if ancestor is None else f"{ancestor.pid}:{ancestor.create_time()}"
    except psutil.Error:
        return None


def alive(identity: str) -> bool:
    """Whether the process `dvc_identity` named still runs."""
    import psutil

    pid, started = identity.split(":", 1)
    try:
        return bool(psutil.Process(int(pid)).create_time() == float(started))
    except (psutil.Error, ValueError):
        return False
