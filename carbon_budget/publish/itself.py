"""The tool's own cost: what publishing an execution spent, recorded as `carbon-budget itself` so the next gate
counts it, and logged on that execution's parent run."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.measure.cpu import charge_usage
from carbon_budget.measure.stage import usage_record
from carbon_budget.publish.runs import epoch_ms, metric_batch, open_client
from carbon_budget.publish.tags import ITSELF_METRIC
from carbon_budget.records.record import EmissionRecord, save_record


def record_itself(
    snapshot: dict[str, Any],
    parent_id: str | None,
    uri: str,
    *,
    cpu_s: float,
    ram_gb_s: float,
    duration_s: float,
    covers: str,
) -> EmissionRecord | None:
    """The tool's own cost of publishing one execution, as a record (`layout.ITSELF_RECORD`, which the next gate
    counts) and as metrics on that execution's parent run. Charged at the rates the execution's own records were
    charged (`charge_usage`: on a host where RAPL measured their CPU, what it measured per CPU-second of their
    work); None when the snapshot holds no record to take them from.

    The gate stage's own record is folded in: its process judges and hands over, so it is the tool's work, and it
    is in no total of its own execution (the verdict is reached while it runs). Its CPU-seconds and GB-seconds
    join the worker's, named apart in `extra_metrics.tool_stages_cpu_s`, and the line's interval runs from the
    earlier of its start and the `duration_s` before now, to now: the span SCI counts the machine held for it."""
    entries = [EmissionRecord.model_validate(e["record"]) for e in snapshot.get("entries", [])]
    likes = [r for r in entries if r.hardware.cpu_count > 0]
    if not likes:
        return None
    judged = set((snapshot.get("verdict") or {}).get("stages") or {})
    tools = [r for r in entries if r.stage not in judged]
    tools_cpu_s = sum(float(r.extra_metrics.get("cpu_s", 0.0)) for r in tools)
    if tools:
        covers = f"the {' and '.join(r.stage for r in tools)} stage ({tools_cpu_s:.2f} CPU-s), then {covers}"
    now = datetime.now(UTC).timestamp()
    began = min([now - duration_s, *(datetime.fromisoformat(r.started_at).timestamp() for r in tools)])
    reading = charge_usage(
        cpu_s + tools_cpu_s,
        ram_gb_s + sum(float(r.extra_metrics.get("ram_gb_s", 0.0)) for r in tools),
        now - began,
        likes,
    )
    record = usage_record(
        layout.ITSELF,
        reading,
        datetime.fromtimestamp(began, UTC).isoformat(timespec="milliseconds"),
        {"covers": covers, "execution_id": str(snapshot.get("execution_id", ""))},
        {"tool_stages_cpu_s": tools_cpu_s} if tools else {},
    )
    save_record(Path(snapshot["work_dir"]) / layout.ITSELF_RECORD, record)
    if parent_id is not None:
        with contextlib.suppress(Exception):  # MLflow raises many types; the record above already holds the figures
            figures = {"energy_kwh": record.energy_kwh, "co2_kg": record.co2_kg, "cpu_s": cpu_s + tools_cpu_s}
            metrics = {f"{ITSELF_METRIC}{key}": value for key, value in figures.items()}
            open_client(uri).log_batch(parent_id, metrics=metric_batch(metrics, epoch_ms(record.ended_at)))
    return record
