"""What the background worker runs: `python -m carbon_budget.publish.service`, started by `worker.ensure_running`.

The worker module knows sockets and processes, not MLflow; this module binds it to the publishing jobs, so
imports point one way (service -> delivery -> worker). The worker's own cost is the tool's cost: after each
execution it has published, what it spent since the last one (CPU-seconds of its process, GB-seconds of its
memory) is recorded as `carbon-budget itself` (`itself.record_itself`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from carbon_budget.measure.cpu import process_started_at, tree_cpu_seconds
from carbon_budget.measure.memory import MemoryMeter
from carbon_budget.measure.quiet import wait_for_quiet
from carbon_budget.publish import worker
from carbon_budget.publish.delivery import finish_delivery
from carbon_budget.publish.itself import record_itself
from carbon_budget.publish.outbox import delivering, read_snapshot
from carbon_budget.publish.runs import publish as publish_runs
from carbon_budget.publish.runs import warm_up

QUIET_LIMIT_S = 900.0  # the longest a warm-up step waits for a training forecast to end


class _Spent:
    """The worker's usage since it last accounted for itself: CPU-seconds from its process's start (interpreter and
    imports included), memory as GB-seconds from a meter started at once."""

    def __init__(self) -> None:
        self._since = process_started_at()  # exact to a clock tick: psutil's is up to a second early
        self._memory = MemoryMeter()
        self._memory.start(ramp_s=time.time() - self._since)
        self._cpu_s = self._gb_s = 0.0

    def take(self) -> tuple[float, float, float]:
        """(CPU-seconds, GB-seconds, seconds) since the last call."""
        cpu_s, gb_s, now = tree_cpu_seconds(), self._memory.gb_seconds(), time.time()
        spent = (cpu_s - self._cpu_s, gb_s - self._gb_s, now - self._since)
        self._cpu_s, self._gb_s, self._since = cpu_s, gb_s, now
        return spent


def jobs(uri: str) -> dict[str, Callable[..., Any]]:
    """Import and open what publishing needs (MLflow and its store), then return the jobs by name.

    The warm-up waits while a training stage forecasts its energy (`measure.quiet`): done beside its early
    epochs, the warm-up slowed them and the forecast read high."""
    spent = _Spent()
    wait_for_quiet(QUIET_LIMIT_S)
    warm_up(uri)

    def publish(folder: str, uri: str) -> worker.Deferred:
        # the snapshot stays held until its follow-up is done, so a sync meanwhile leaves it alone
        held = contextlib.ExitStack()
        held.enter_context(delivering(Path(folder)))
        try:
            snapshot = read_snapshot(Path(folder))
            published = publish_runs(Path(folder), uri)
        except BaseException:
            held.close()
            raise

        def finish() -> None:
            with held:
                finish_delivery(Path(folder), uri)
            cpu_s, gb_s, duration_s = spent.take()
            record_itself(
                snapshot,
                published.parent_run_id,
                uri,
                cpu_s=cpu_s,
                ram_gb_s=gb_s,
                duration_s=duration_s,
                covers="the background worker: its start and warm-up, MLflow publishing, pictures and the model",
            )

        return worker.Deferred(asdict(published), finish)

    return {"publish": publish}


if __name__ == "__main__":
    # the store comes from the environment only: a command line is readable by anyone on the machine, so the one
    # `ensure_running` gives holds at most a local store's file, as a label
    served_uri = os.environ[worker.URI_ENV]
    worker.serve(served_uri, lambda: jobs(served_uri))
