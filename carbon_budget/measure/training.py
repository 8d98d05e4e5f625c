"""Budget-aware training for any training loop: forecast the stage's energy after warm-up and stop at the end of
an epoch once the forecast confirms an overrun.

    with TrainingBudget(epochs=20) as budget:      # reads params.yaml: budget, forecast, carbon
        for epoch in range(1, 21):
            train_one_epoch()
            if budget.end_epoch(epoch):
                break                              # on `abort`, leaving the block raises ForecastOverrun

The Lightning and transformers callbacks (`carbon_budget.integrations`) are this object behind each framework's
hooks. Under `carbon-budget track` it uses the wrapper's meter, asked over a unix socket the wrapper names in
CARBON_BUDGET_METER (one meter, one record, energy counted once) and reports how training ended, so the wrapper's
record says `aborted` / `stopped_by: budget_forecast`; run on its own, it measures and writes the record itself;
given a `StageRun` the caller owns (`run=`: the reference pipeline's train stage, whose record also names its
model), it reads that run's meter and leaves the outcome on its record. Whether to stop is the forecaster's call
(`Forecaster.decide`: warm-up, windows, two forecasts in a row over the budget's floor).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from carbon_budget.config import (
    PARAMS_FILE,
    BudgetParams,
    CarbonParams,
    ForecastParams,
    parse_section,
    read_params_file,
)
from carbon_budget.errors import CarbonBudgetError, ForecastOverrun, MeasurementError, RecordError
from carbon_budget.layout import record_path, tracking_uri
from carbon_budget.measure.forecast import Forecaster, training_budget_kwh
from carbon_budget.measure.quiet import forecasting
from carbon_budget.measure.stage import StageRun
from carbon_budget.records.dvcyaml import DVC_FILE, read_stages, running_stage_outputs, upstream_stages
from carbon_budget.records.record import load_record

METER_ENV = "CARBON_BUDGET_METER"  # the unix socket of the `carbon-budget track` wrapper measuring this process
STAGE_ENV = "CARBON_BUDGET_STAGE"  # the stage name the wrapper records under
BUDGET_STOP = "budget_forecast"  # `stopped_by` of a run the forecast stopped


def stage_name(explicit: str | None = None) -> str:
    """The stage a training loop belongs to: given, else the `carbon-budget track` wrapper's, else DVC's."""
    name = explicit or os.environ.get(STAGE_ENV) or os.environ.get("DVC_STAGE", "").rsplit(":", 1)[-1]
    if not name:
        raise CarbonBudgetError(
            "no stage name: pass stage=..., or run under `carbon-budget track --stage NAME` or `dvc repro`"
        )
    return name


def budget_for(stage: str, budget: BudgetParams, root: Path = Path()) -> tuple[float, str]:
    """What a stage may spend, and the params key that sets it: its own `budget.stages.<stage>.energy_kwh`, else
    `budget.energy_kwh` less what the stages DVC runs before it (its upstream in dvc.yaml) have spent, by their
    records (a stage without one counts nothing)."""
    own = budget.stages.get(stage)
    if own is not None and own.energy_kwh is not None:
        return own.energy_kwh, f"budget.stages.{stage}.energy_kwh"
    spent = 0.0
    stages = read_stages(root / DVC_FILE) if (root / DVC_FILE).is_file() else {}
    for name in upstream_stages(stages, stage):
        with contextlib.suppress(RecordError):
            spent += load_record(root / record_path(name)).energy_kwh
    return training_budget_kwh(None, budget.energy_kwh, spent), "budget.energy_kwh"


class _Wrapper:
    """The `carbon-budget track` process measuring us, reached over its socket."""

    def __init__(self, path: str) -> None:
        self._path = path

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(30)
            try:
                client.connect(self._path)
                client.sendall(json.dumps(request).encode() + b"\n")
                answer: dict[str, Any] = json.loads(client.makefile("rb").readline() or b"{}")
            except (OSError, ValueError) as exc:
                raise MeasurementError(f"the carbon-budget track wrapper did not answer ({exc})") from None
        if "error" in answer:
            raise MeasurementError(str(answer["error"]))
        return answer


class TrainingBudget:
    """A training loop's energy budget: `end_epoch` says when to stop; leaving the block writes (or hands the
    wrapper) how training ended, and raises ForecastOverrun when it stopped for its budget under `abort`.

    `epochs_run` and `stopped_by` are what the record says of how training ended; a loop that knows better sets
    them before the block ends (it stopped early on its own: `stopped_by = "early_stopping"`).
    """

    def __init__(
        self,
        epochs: int,
        stage: str | None = None,
        *,
        budget_kwh: float | None = None,
        forecast: ForecastParams | None = None,
        carbon: CarbonParams | None = None,
        params_file: Path = Path(PARAMS_FILE),
        run: StageRun | None = None,
        nodes: int = 1,
    ) -> None:
        """Unset arguments come from `params_file` (the sections `carbon-budget init` writes): the budget from
        `budget:` (none when absent: forecasts are recorded, nothing stops), `forecast:` and `carbon:`.

        `run`: a StageRun the caller has entered and will exit (with `forecasts=True`, so background work waits):
        forecasts read its meter, and the outcome lands on its record; the stage name defaults to its own. `nodes`:
        the run is one of that many nodes doing the same work (data-parallel training), so the whole run costs this
        node's energy times `nodes`."""
        if epochs < 1:
            raise CarbonBudgetError(f"epochs = {epochs!r}: a budgeted training run needs a known number of epochs >= 1")
        self.stage = stage_name(stage or (run.stage if run is not None else None))
        raw = read_params_file(params_file, missing_ok=True)
        self._forecast = forecast or parse_section(raw, "forecast", ForecastParams, str(params_file))
        self._carbon = carbon  # None: the StageRun it starts reads `carbon:` from params_file
        self._budget_key = "the budget_kwh argument"  # what the overrun message tells the user to change
        if budget_kwh is None and raw.get("budget") is not None:
            budget = parse_section(raw, "budget", BudgetParams, str(params_file))
            budget_kwh, key = budget_for(self.stage, budget)
            self._budget_key = f"{params_file} {key}"
        self.budget_kwh = budget_kwh
        self.epochs = epochs
        self._nodes = nodes
        self._params_file = params_file
        self._wrapper = _Wrapper(os.environ[METER_ENV]) if os.environ.get(METER_ENV) and run is None else None
        self._given = run  # the caller's: read, written to, never entered or exited here
        self._run: StageRun | None = None
        self._quiet = contextlib.ExitStack()  # under the wrapper, the training process keeps background work waiting
        self._forecaster: Forecaster | None = None
        self.epochs_run = 0
        self.stopped_by = ""

    def start(self) -> None:
        intensity: float
        ahead: Callable[[float], float | None] | None  # the grid's intensity over the time still to run
        if self._given is not None:
            intensity = self._given.intensity_g_per_kwh
            ahead = self._given.intensity_ahead_g_per_kwh
        elif self._wrapper is not None:
            self._quiet.enter_context(forecasting(tracking_uri()))
            intensity = float(self._wrapper.ask({"op": "intensity"})["g_per_kwh"])
            ahead = None  # the wrapper's meter serves its intensity now, not a series
        else:
            record = record_path(self.stage)
            self._run = StageRun(
                self.stage,
                ("carbon",),
                outputs=running_stage_outputs(exclude=record),
                carbon=self._carbon,
                params_file=self._params_file,
                # a DVC stage's process is the stage; elsewhere (a notebook) the process ran before training did
                from_process_start="DVC_STAGE" in os.environ,
                forecasts=True,
            )
            self._run.__enter__()
            intensity = self._run.intensity_g_per_kwh
            ahead = self._run.intensity_ahead_g_per_kwh
        f = self._forecast
        self._forecaster = Forecaster(
            self.epochs,
            f.warmup_epochs,
            self.budget_kwh,
            intensity,
            f.sample_every_s,
            f.min_window_s,
            on_overrun=f.on_overrun,
            intensity_ahead=ahead,
        )

    def _energy_kwh(self) -> float:
        if self._wrapper is not None:
            return float(self._wrapper.ask({"op": "sample"})["energy_kwh"]) * self._nodes
        run = self._given or self._run
        assert run is not None
        return run.energy_kwh() * self._nodes

    def end_epoch(self, epoch: int) -> bool:
        """Call after each epoch with the number of epochs done (1-based); True means stop training now."""
        if self._forecaster is None:
            raise CarbonBudgetError("TrainingBudget.end_epoch before start(): use it as a context manager")
        self.epochs_run = epoch
        decision = self._forecaster.decide(epoch, self._energy_kwh)
        if decision == "warn" and self._forecaster.latest is not None:
            said = self._forecaster.latest.message()
            print(f"warning: {self.stage}: {said}; continuing (forecast.on_overrun: warn)", file=sys.stderr)
        if decision == "stop":
            self.stopped_by = BUDGET_STOP
        return decision == "stop"

    def outcome(self) -> tuple[dict[str, float], dict[str, str]]:
        """The figures and tags the record carries: the first forecast, epochs run, the budget, who stopped."""
        metrics: dict[str, float] = {"epochs_run": self.epochs_run}
        if self.budget_kwh is not None:
            metrics["training_budget_kwh"] = self.budget_kwh
        if self._forecaster is not None:
            metrics.update(self._forecaster.figures())
        tags = {"stopped_by": self.stopped_by or "completed", "forecast_policy": self._forecast.on_overrun}
        return metrics, tags

    def overrun(self) -> ForecastOverrun:
        latest = self._forecaster.latest if self._forecaster else None
        said = latest.message() if latest else "forecast over budget"
        return ForecastOverrun(f"{self.stage}: {said} ({self._budget_key}; forecast.on_overrun: abort)")

    def finish(self, error: BaseException | None = None) -> None:
        """Record how training ended; raises ForecastOverrun when it stopped for its budget (and nothing else
        failed), so the process exits non-zero and `dvc repro` keeps the last good run in dvc.lock."""
        self._quiet.close()
        metrics, tags = self.outcome()
        failure = self.overrun() if self.stopped_by == BUDGET_STOP and error is None else error
        if self._given is not None:
            self._given.extra_metrics.update(metrics)
            self._given.tags.update(tags)
        elif self._wrapper is not None:
            self._wrapper.ask({"op": "outcome", "metrics": metrics, "tags": tags, "message": str(failure or "")})
        elif self._run is not None:
            run, self._run = self._run, None
            run.extra_metrics.update(metrics)
            run.tags.update(tags)
            run.__exit__(type(failure) if failure else None, failure, None)
        if failure is not None and error is None:
            raise failure

    def __enter__(self) -> TrainingBudget:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(exc)


class MeterServer:
    """The `carbon-budget track` side: serves the wrapper's meter to a training loop in the tracked command, and
    keeps what it reports about how training ended."""

    def __init__(self, sample_kwh: Callable[[], float], intensity_g_per_kwh: float) -> None:
        self._sample = sample_kwh
        self._intensity = intensity_g_per_kwh
        self._lock = threading.Lock()
        self.path = Path(tempfile.mkdtemp(prefix="carbon-budget-meter-")) / "meter.sock"
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        self._server.listen(4)
        self.outcome: dict[str, Any] | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "intensity":
            return {"g_per_kwh": self._intensity}
        if op == "sample":
            with self._lock:  # codecarbon's tracker is not meant for two readers at once
                return {"energy_kwh": self._sample()}
        if op == "outcome":
            self.outcome = request
            return {"ok": True}
        return {"error": f"unknown request {op!r}"}

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return  # closed
            with connection:
                try:
                    answer = self._answer(json.loads(connection.makefile("rb").readline()))
                except (ValueError, CarbonBudgetError) as exc:
                    answer = {"error": str(exc)}
                with contextlib.suppress(OSError):
                    connection.sendall(json.dumps(answer).encode() + b"\n")

    def close(self) -> None:
        self._server.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
            self.path.parent.rmdir()
