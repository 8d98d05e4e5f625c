"""A record's times are the stage's real ones: it starts when its process did, its duration is its timestamps' span,
and consecutive stages line up instead of overlapping."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from carbon_budget.records.record import span_s

# One clock tick (the kernel keeps a process's start in 10 ms ticks, rounded down) and the millisecond a timestamp
# drops: how early a true start may read. psutil's start, rounded through the boot second, read up to 1 s early.
TICK_S = 0.011

STAGE = """
import json, sys
from pathlib import Path
from carbon_budget.measure.stage import StageRun
with StageRun("unit", record_file=Path(sys.argv[1])) as run:
    pass
print(json.dumps(run.record.model_dump(mode="json")))
"""

STARTED = """
import time
from carbon_budget.measure.cpu import process_started_at
print(process_started_at(), time.time())
"""


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def test_a_process_starts_after_it_was_launched_and_before_it_runs() -> None:
    """The start /proc gives, against the boot moment: between the launch and the process's first statement."""
    launched = time.time()
    started, running = map(float, subprocess.check_output([sys.executable, "-c", STARTED], text=True).split())
    assert launched - TICK_S <= started <= running


def test_consecutive_stages_line_up_and_each_lasts_its_timestamps_span(tmp_path: Path) -> None:
    """Two stage processes one after the other, as `dvc repro` runs them: the second starts after the first ended
    (to a clock tick), each starts no earlier than it was launched, and `duration_s` is `ended_at - started_at`,
    codecarbon's start (its hardware probe) and stop included."""
    records, launched = [], []
    for name in ("first", "second"):
        launched.append(time.time())
        out = subprocess.run(
            [sys.executable, "-c", STAGE, str(tmp_path / f"{name}.json")],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        )
        records.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = records
    for record, at in zip(records, launched, strict=True):
        assert epoch(record["started_at"]) >= at - TICK_S
        assert record["duration_s"] == span_s(record["started_at"], record["ended_at"])
        metrics = record["extra_metrics"]
        assert record["duration_s"] >= metrics["startup_s"] + metrics["tracker_start_s"] - 0.001
    assert epoch(second["started_at"]) >= epoch(first["ended_at"]) - TICK_S


def test_the_tools_own_line_spans_its_work_and_the_gate_stage_folded_into_it(tmp_path: Path) -> None:
    """The worker worked the last 5 s; the gate stage it folds in ran from 60 s to 50 s ago: the line runs from the
    gate stage's start to now, the span SCI unites with the stages' (summed, the durations read 15 s)."""
    from carbon_budget.publish.itself import record_itself
    from carbon_budget.records.record import timestamp
    from tests.conftest import record

    now = time.time()
    hardware = record("x", 0.0).hardware.model_copy(update={"cpu_tdp_w": 20.0})
    train = record("train", 1e-5).model_copy(update={"hardware": hardware})
    gate = record("gate", 1e-7).model_copy(
        update={
            "hardware": hardware,
            "started_at": timestamp(now - 60),
            "ended_at": timestamp(now - 50),
            "duration_s": 10.0,
            "extra_metrics": {"cpu_s": 0.5},
        }
    )
    snapshot = {
        "work_dir": str(tmp_path),
        "verdict": {"stages": {"train": {}}},
        "entries": [{"record": r.model_dump(mode="json")} for r in (train, gate)],
    }
    itself = record_itself(snapshot, None, "", cpu_s=1.0, ram_gb_s=0.0, duration_s=5.0, covers="w")
    assert itself is not None
    assert itself.started_at == gate.started_at
    assert now <= epoch(itself.ended_at) + 0.001 <= time.time() + 0.001
    assert itself.duration_s == span_s(itself.started_at, itself.ended_at)
