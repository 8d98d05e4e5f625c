"""What measured a record: a record's fingerprint, and whether two records were measured alike.

Two records measured on different machines, or by different methods, cannot be compared for energy: a laptop's
RAPL figure and a CI runner's TDP estimate differ by more than most changes. The report compares energy and CO2
only between equal fingerprints (`report/noise.py`), and MLflow keeps each stage run's fingerprint id as a tag, so
the base branch's history is read only where it was measured like the head.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# what measured a record: a difference in any of these changes its energy without any change in the work
_FINGERPRINT = (
    ("hardware", "cpu_model"),
    ("hardware", "cpu_count"),
    ("hardware", "cpu_tdp_w"),
    ("hardware", "gpu_model"),
    ("hardware", "gpu_count"),
    ("extra_metrics", "ram_w_per_gb"),
    ("methods", "cpu"),
    ("methods", "gpu"),
    ("methods", "ram"),
    ("", "pue"),
    ("", "tracking_mode"),
)


def fingerprint(record: dict[str, Any]) -> dict[str, Any]:
    """What measured a record, as `section.key` -> value (None where the record does not say)."""
    found = {}
    for section, key in _FINGERPRINT:
        holder = record.get(section) if section else record
        found[f"{section}.{key}" if section else key] = holder.get(key) if isinstance(holder, dict) else None
    return found


def fingerprint_id(record: dict[str, Any]) -> str:
    """A short id of `fingerprint(record)`, equal exactly when the fingerprints are: a tag MLflow can filter on."""
    return hashlib.sha256(json.dumps(fingerprint(record), sort_keys=True).encode()).hexdigest()[:16]


def _machine(record: dict[str, Any]) -> str:
    hardware = record.get("hardware") or {}
    tdp = hardware.get("cpu_tdp_w")
    return f"{hardware.get('cpu_model', '?')} x{hardware.get('cpu_count', '?')}" + (f" at {tdp:g} W" if tdp else "")


def unlike(current: dict[str, Any], base: dict[str, Any]) -> str | None:
    """None when the two records were measured alike; else one line saying what differs."""
    a, b = fingerprint(current), fingerprint(base)
    differing = [key for key in a if a[key] != b[key]]
    if not differing:
        return None
    return f"base measured on {_machine(base)}, head on {_machine(current)} (differs: {', '.join(differing)})"
