"""The lifetime of one stage: measure it, and write its emission record however it ends.

Every stage script wraps its work in `StageRun`; `carbon-budget track` does the same around a foreign
command, and the training callbacks around a training loop run without the wrapper. Measuring never starts
publishing: the entry point that wants MLflow asks for the worker itself (`carbon_budget.entry`).
The record is written on success, on error and on SIGTERM/SIGINT alike, so the energy a failed stage
spent is never lost, and the outputs it paid for are hashed so the gate can tell whose cost it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import signal
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from carbon_budget.config import PARAMS_FILE, CarbonParams, parse_section, read_params_file, section_value
from carbon_budget.errors import MeasurementError, StageAborted, StageInterrupted
from carbon_budget.layout import record_path, tracking_uri
from carbon_budget.measure.cpu import process_started_at
from carbon_budget.measure.energy import EnergyMeter
from carbon_budget.measure.grid_intensity import GridIntensity
from carbon_budget.measure.memory import ram_source
from carbon_budget.measure.quiet import forecasting
from carbon_budget.measure.reading import EnergyReading, Intensity
from carbon_budget.records.record import EmissionRecord, Hardware, Methods, file_md5, save_record, span_s, timestamp

CHECKPOINT_EVERY_S = 5.0


def hash_outputs(paths: Iterable[Path]) -> dict[str, str]:
    """md5 of every file among `paths` (directories expanded), keyed by its path as DVC writes it."""
    digests: dict[str, str] = {}
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digests[file.as_posix()] = file_md5(file)
    return digests


def build_record(
    stage: str,
    reading: EnergyReading,
    started_at: str,
    status: str,
    error: str | None,
    params: dict[str, Any],
    outputs: dict[str, str],
    metrics_files: list[str],
    artifacts: list[str],
    extra_metrics: dict[str, float],
    tags: dict[str, str],
) -> EmissionRecord:
    """Assemble a record from a reading and what the stage produced, ending now. Its duration is its timestamps'
    span, not the meter's: the meter starts after the interpreter, the imports and codecarbon's hardware probe,
    which are the stage's time too."""
    figures = dataclasses.asdict(reading)
    del figures["duration_s"]
    ended_at = timestamp(time.time())
    ram_gb_s, ram_w_per_gb = figures.pop("ram_gb_s"), figures.pop("ram_w_per_gb")
    cpu_s = figures.pop("cpu_s")
    if cpu_s is not None:  # the stage's own CPU work, however its CPU figure was got: comparable across machines
        extra_metrics = {**extra_metrics, "cpu_s": cpu_s}
    if ram_gb_s is not None:  # what the RAM figure was charged for, and at what rate from which source
        extra_metrics = {**extra_metrics, "ram_gb_s": ram_gb_s, "ram_w_per_gb": ram_w_per_gb}
        tags = {**tags, "ram_w_per_gb_source": ram_source(ram_w_per_gb)}
    return EmissionRecord(
        record_id=uuid.uuid4().hex,
        stage=stage,
        status=status,  # type: ignore[arg-type]
        error=error,
        started_at=started_at,
        ended_at=ended_at,
        duration_s=span_s(started_at, ended_at),
        **{**figures, "methods": Methods(**reading.methods), "hardware": Hardware(**reading.hardware)},
        params=params,
        outputs=outputs,
        metrics_files=metrics_files,
        artifacts=artifacts,
        extra_metrics=extra_metrics,
        tags=tags,
    )


def usage_record(
    stage: str, reading: EnergyReading, started_at: str, tags: dict[str, str], extra_metrics: dict[str, float]
) -> EmissionRecord:
    """A record of the tool's own work (its gate's process, its publishing), charged by what it used: completed,
    with no params, outputs or files of its own."""
    return build_record(
        stage=stage,
        reading=reading,
        started_at=started_at,
        status="completed",
        error=None,
        params={},
        outputs={},
        metrics_files=[],
        artifacts=[],
        extra_metrics=extra_metrics,
        tags=tags,
    )


class StageRun:
    """Context manager owning a stage's measurement and record.

    `outputs` are hashed into the record; `metrics_files` and `artifacts` tell the MLflow publisher what to
    log for this stage. Errors propagate after the record is written: the caller decides the exit code.
    """

    def __init__(
        self,
        stage: str,
        sections: Iterable[str] = (),
        outputs: Iterable[Path] = (),
        metrics_files: Iterable[Path] = (),
        artifacts: Iterable[Path] = (),
        record_file: Path | None = None,
        carbon: CarbonParams | None = None,
        params_file: Path = Path(PARAMS_FILE),
        wraps_command: bool = False,
        from_process_start: bool = True,
        forecasts: bool = False,
    ) -> None:
        """`sections` are the params (dotted names) the stage's result depends on: the record keeps their values
        as params.yaml holds them, as DVC reads them, so the gate can tell a record measured with other params.
        `carbon` is read from the same file when the caller has not validated it already. `wraps_command`: the
        stage is a command this process runs (`carbon-budget track`), whose memory is the command's alone.
        `from_process_start`: this process is the stage (a DVC stage's script, the `track` wrapper), so it is
        charged from the process's start (interpreter, imports, params validation), not from the meter's; False for
        a measurement inside a longer-lived process (a notebook's training loop). `forecasts`: the stage forecasts its
        energy from its own meter, and the tool's background work waits while it runs (`measure.quiet`)."""
        self.stage = stage
        raw = read_params_file(params_file, missing_ok=True)
        self._params = {name: section_value(raw, name) for name in sections}
        carbon = carbon or parse_section(raw, "carbon", CarbonParams, str(params_file))
        self._outputs = list(outputs)
        self._metrics_files = [p.as_posix() for p in metrics_files]
        # artifacts may be drawn later (the gate draws the PNGs): the snapshot takes those that exist then
        self._artifacts = [p.as_posix() for p in artifacts]
        self._record_file = record_file or record_path(stage)
        self._meter = EnergyMeter(carbon, stage, wraps_command)
        # with a series, CO2 is charged at the grid's intensity over the hours the energy was spent (the meter's
        # own intensity is then the fallback); a file is relative to the project root, where stages run. Public:
        # the intervals it charged are what a reader checks the record's intensity against
        self.grid = (
            GridIntensity(carbon.intensity_series, Path.cwd(), self._meter.intensity, carbon.measure_power_secs)
            if carbon.intensity_series
            else None
        )
        self._started_at = ""
        self._previous_handlers: dict[int, Any] = {}
        self.extra_metrics: dict[str, float] = {}
        self.tags: dict[str, str] = {}
        self._stopped_by = ""
        self.record: EmissionRecord | None = None
        self._finished = threading.Event()
        self._checkpoints: threading.Thread | None = None
        self._entered = 0.0
        self._from_process_start = from_process_start
        self._forecasts = forecasts
        self._quiet = contextlib.ExitStack()

    def _checkpoint(self) -> None:
        """Leave the energy spent so far on record as `running`, every CHECKPOINT_EVERY_S: a stage killed without
        warning (SIGKILL, the OOM killer) cannot write its record, and the gate must still see what it spent."""
        while not self._finished.wait(CHECKPOINT_EVERY_S):
            try:
                reading = self._meter.running_reading(time.time() - self._entered)
            except MeasurementError:
                continue  # the meter is stopping: the final record follows
            if self.grid is not None:
                reading = self.grid.charge(reading, time.time(), final=False)
            record = build_record(
                stage=self.stage,
                reading=reading,
                started_at=self._started_at,
                status="running",
                error="never finished: killed without warning (SIGKILL, out of memory) or still running",
                params=self._params,
                outputs={},
                metrics_files=[],
                artifacts=[],
                extra_metrics=dict(self.extra_metrics),
                tags=dict(self.tags),
            )
            if not self._finished.is_set():
                save_record(self._record_file, record)

    def __enter__(self) -> StageRun:
        if self._forecasts:
            self._quiet.enter_context(forecasting(tracking_uri()))
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        self._entered = time.time()
        process_start = process_started_at()
        self.extra_metrics["startup_s"] = self._entered - process_start  # interpreter and imports
        self._started_at = timestamp(process_start if self._from_process_start else self._entered)
        self.tags["charged_from"] = "process start" if self._from_process_start else "meter start"
        self._meter.start(process_start if self._from_process_start else None)
        if self.grid is not None:
            self.grid.start(process_start if self._from_process_start else self._entered, self._meter.sample_kwh)
        self.extra_metrics["tracker_start_s"] = time.time() - self._entered
        self._checkpoints = threading.Thread(target=self._checkpoint, name="carbon-budget-checkpoint", daemon=True)
        self._checkpoints.start()
        return self

    @property
    def intensity_g_per_kwh(self) -> float:
        return self._meter.intensity_g_per_kwh

    @property
    def intensity(self) -> Intensity:
        return self._meter.intensity

    def intensity_ahead_g_per_kwh(self, duration_s: float) -> float | None:
        """The grid's mean intensity over the next `duration_s` seconds from `carbon.intensity_series`, for the CO2
        of a forecast's energy still to come; None without a series, or where it does not cover that time."""
        return self.grid.ahead_g_per_kwh(duration_s) if self.grid is not None else None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Remembered as well as raised: a signal that lands inside codecarbon is swallowed by its blanket
        # exception handling, and must still end the stage as `aborted`.
        self._stopped_by = f"stopped by {signal.Signals(signum).name}"
        raise StageInterrupted(self._stopped_by)

    def methods_now(self) -> dict[str, str]:
        """How the meter charges each component now: the method of any figure read from it while the stage runs."""
        return self._meter.running_methods()

    def energy_kwh(self) -> float:
        """Energy the stage has cost so far (a fresh reading), for forecasts made while it runs."""
        try:
            return self._meter.sample_kwh()
        except MeasurementError:
            if self._stopped_by:
                raise StageInterrupted(self._stopped_by) from None
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stopping = time.time()
        self._finished.set()
        if self._checkpoints is not None:
            self._checkpoints.join()
        try:
            reading = self._meter.stop()
            self.extra_metrics["tracker_stop_s"] = time.time() - stopping
            self.extra_metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        finally:
            if self.grid is not None:
                self.grid.stop()
            self._quiet.close()
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)
        if self.grid is not None:
            reading = self.grid.charge(reading, time.time(), final=True)
        if self._stopped_by:
            status, error = "aborted", self._stopped_by
        elif exc is None:
            status, error = "completed", None
        elif isinstance(exc, StageAborted | KeyboardInterrupt):
            status, error = "aborted", str(exc) or type(exc).__name__
        else:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        self.record = build_record(
            stage=self.stage,
            reading=reading,
            started_at=self._started_at,
            status=status,
            error=error,
            params=self._params,
            outputs=hash_outputs(self._outputs) if status == "completed" else {},
            metrics_files=[p for p in self._metrics_files if Path(p).exists()],
            artifacts=self._artifacts,
            extra_metrics=self.extra_metrics,
            tags=self.tags,
        )
        save_record(self._record_file, self.record)
