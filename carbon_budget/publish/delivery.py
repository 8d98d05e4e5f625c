"""A delivery: an execution from the outbox into MLflow, its runs first, then its pictures and model, then the
tool's own cost of it; the snapshot leaves the outbox only once MLflow holds all of it.

Local first, published once: the gate writes the snapshot (`outbox.py`) before any MLflow call, so the verdict
never waits on MLflow; if the server is down, `carbon-budget sync` delivers it later.
"""

from __future__ import annotations

import contextlib
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.gate.evidence import Evidence
from carbon_budget.layout import tracking_uri
from carbon_budget.measure.cpu import tree_cpu_seconds
from carbon_budget.measure.memory import tree_rss_gb
from carbon_budget.publish import worker
from carbon_budget.publish.itself import record_itself
from carbon_budget.publish.model import log_deployed_model
from carbon_budget.publish.outbox import delivering, read_snapshot, write_snapshot
from carbon_budget.publish.runs import Published, PublishError, attach_pictures, publish
from carbon_budget.records.record import EmissionRecord


def deliver(folder: Path, uri: str | None = None) -> Published:
    """Publish a snapshot, its runs first and its model after, and drop it from the outbox once MLflow holds all
    of it. The warm background worker, when one answers, replies once the runs are in and logs the model after;
    it removes the snapshot itself, and a snapshot it could not finish stays for `carbon-budget sync`."""

    uri = uri or tracking_uri()
    answer = worker.call(uri, "publish", folder=str(folder.resolve()), uri=uri)
    if answer is not None:
        if not answer["ok"]:
            raise PublishError(str(answer["error"]))
        return Published(**answer["result"])
    cpu_s, started = tree_cpu_seconds(), datetime.now().timestamp()
    with delivering(folder):
        snapshot = read_snapshot(folder)
        result = publish(folder, uri)
        finish_delivery(folder, uri)
    duration_s = datetime.now().timestamp() - started
    with contextlib.suppress(CarbonBudgetError, OSError):  # the cost line is news, never a reason to fail publishing
        record_itself(
            snapshot,
            result.parent_run_id,
            uri,
            cpu_s=tree_cpu_seconds() - cpu_s,
            ram_gb_s=tree_rss_gb() * duration_s,
            duration_s=duration_s,
            covers="MLflow publishing, pictures and the model, in the gate's own process (no background worker)",
        )
    return result


def finish_delivery(folder: Path, uri: str) -> None:
    """The slow tail of a delivery, after the runs are in: draw the pictures and attach them to their runs,
    log the deployed model, then the snapshot leaves the outbox."""
    attach_pictures(folder, uri)
    log_deployed_model(folder, uri)
    shutil.rmtree(folder, ignore_errors=True)


def publish_execution(
    experiment: str,
    params: dict[str, Any],
    document: dict[str, Any],
    evidence: Evidence,
    own_records: list[EmissionRecord],
    root: Path,
    pictures: list[dict[str, str]],
    uri: str,
) -> str:
    """Freeze the execution into the outbox, then hand it to MLflow (a parent run, a child per stage); returns the
    line saying where its runs are. `pictures` are the project's own (see `plots.draw_execution`); the energy per
    stage is always drawn and attached to the parent run.

    Raises PublishError naming the kept snapshot when MLflow did not take it: the verdict never waits on MLflow.
    """
    folder = write_snapshot(
        experiment,
        params,
        document,
        list(evidence.records.values()),
        own_records,
        root,
        [layout.ENERGY_PICTURE],
        pictures,
    )
    try:
        published = deliver(folder, uri)
    except PublishError as exc:
        raise PublishError(f"{exc}\nwarning: kept in {folder}; run `carbon-budget sync` once MLflow is back") from None
    return f"MLflow: {published.new_runs} new runs; compare them at {published.ui_url}"
