"""DVC's own share of an execution: the CPU time of the `dvc` process running a stage, which no stage caused.

A module of its own, light to import: the gate reads it on every call, and the gate answers in well under a
second.
"""

from __future__ import annotations

import os


def _is_dvc(cmdline: list[str]) -> bool:
    """`dvc ...`, `python -m dvc ...` or a program running DVC's CLI in-process (`from dvc.cli import main`)."""
    head = [os.path.basename(arg) for arg in cmdline[:2]]
    return "dvc" in head or cmdline[1:3] == ["-m", "dvc"] or any("dvc.cli" in arg for arg in cmdline[1:3])


def dvc_own_cpu_seconds() -> float | None:
    """CPU-seconds the `dvc` process running this one has spent itself so far (its children apart), or None when
    no ancestor is DVC: DVC's own share of an execution, which no stage's record holds and no stage caused."""
    import psutil

    try:
        for ancestor in psutil.Process().parents():
            if _is_dvc(ancestor.cmdline()):
                times = ancestor.cpu_times()
                return float(times.user + times.system)
    except psutil.Error:
        return None
    return None
