"""`carbon-budget track`: run any command under one meter and write the same record as a stage of our own.

The command's training loop, if it uses `TrainingBudget` or a callback, reads this meter over a socket
(`MeterServer`) rather than starting a second one, so its energy is counted once, and tells us how training
ended: a budget stop makes this record `aborted` with `stopped_by: budget_forecast`, not `failed`.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from carbon_budget.errors import CarbonBudgetError, CommandFailed, ForecastOverrun, StageInterrupted
from carbon_budget.layout import record_path
from carbon_budget.measure.stage import StageRun
from carbon_budget.measure.training import METER_ENV, STAGE_ENV, MeterServer
from carbon_budget.records.dvcyaml import running_stage_outputs


def track(
    stage: str,
    command: tuple[str, ...],
    record_file: Path | None,
    params_file: Path,
    *,
    mask: Callable[[str], str],
) -> None:
    """Run `command` measured as `stage`; raises CommandFailed (with its exit code) when it exits non-zero, and
    ForecastOverrun when its training loop stopped for its budget. SIGTERM/SIGINT are passed on to it.

    The record is committed and its tags published, but DVC's shell has expanded `$HF_TOKEN` or
    `$MLFLOW_TRACKING_URI` in the command before we see it: every text we keep of it goes through `mask` (the
    publishing layer's redaction, which this layer cannot import), one argument at a time, before shell quoting
    could split a secret holding a quote."""
    # under `dvc repro` the record names the outputs it paid for, so the gate can tell a stale one
    outputs = running_stage_outputs(exclude=record_file or record_path(stage))
    with StageRun(stage, outputs=outputs, record_file=record_file, params_file=params_file, wraps_command=True) as run:
        run.tags["command"] = shlex.join(mask(argument) for argument in command)[:5000]
        meter = MeterServer(run.energy_kwh, run.intensity_g_per_kwh)
        exit_code = 0
        try:
            try:
                child = subprocess.Popen(command, env={**os.environ, METER_ENV: str(meter.path), STAGE_ENV: stage})
            except OSError as exc:
                raise CarbonBudgetError(f"cannot run {command[0]!r}: {exc.strerror}") from None
            try:
                exit_code = child.wait()
            except StageInterrupted:
                child.send_signal(signal.SIGTERM)
                exit_code = child.wait()
                raise
        finally:
            meter.close()
            run.extra_metrics["exit_code"] = float(exit_code)
        outcome = meter.outcome or {}
        run.extra_metrics.update(outcome.get("metrics", {}))
        run.tags.update({name: mask(str(value)) for name, value in outcome.get("tags", {}).items()})
        if exit_code != 0 and run.tags.get("stopped_by") == "budget_forecast":
            raise ForecastOverrun(str(outcome.get("message") or f"{stage}: stopped for its energy budget"))
        if exit_code != 0:
            raise CommandFailed(exit_code)
