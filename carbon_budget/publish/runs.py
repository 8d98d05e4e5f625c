"""MLflow runs: one parent run per pipeline execution, one nested run per stage; with `model.py`, the only
modules that import mlflow.

An execution is published from one process, from its outbox snapshot, with the stages' real start and end times.
Paying MLflow's start-up (~2-3 s here) once per execution instead of once per stage is most of what keeps a cold
`dvc repro` close to a plain script. Every run is tagged with the id of what it logs (`tags.py`), so a replay
never logs anything twice.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from carbon_budget.config import flatten
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.layout import tracking_uri
from carbon_budget.publish import store
from carbon_budget.publish.outbox import read_snapshot
from carbon_budget.publish.redact import redact, without_credentials
from carbon_budget.publish.tags import (
    CARBON_AWARE_METRIC,
    PREFIX,
    TAG_CACHED_STAGES,
    TAG_CARBON_AWARE_SIGNAL,
    TAG_CARBON_AWARE_SOURCE,
    TAG_EXECUTION,
    TAG_FAILURES,
    TAG_FINGERPRINT,
    TAG_GIT_BRANCH,
    TAG_GIT_COMMIT,
    TAG_HARDWARE_CPU,
    TAG_HARDWARE_GPU,
    TAG_INTENSITY_SOURCE,
    TAG_MEASUREMENT,
    TAG_METHOD,
    TAG_PARENT_RUN,
    TAG_RECORD,
    TAG_STAGE,
    TAG_STATUS,
    TAG_TRACKING_MODE,
    TAG_VERDICT,
)
from carbon_budget.records.fingerprint import fingerprint_id
from carbon_budget.records.record import EmissionRecord

# A dead server otherwise costs minutes of retries per call, and MLflow prints a link per run and model with the
# tracking URI in it, credentials included (the gate prints one link, without them); a user's settings still win.
_MLFLOW_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_PRINT_MODEL_URLS_ON_CREATION": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a bar per file copied into the model, in the gate's output
}


class PublishError(CarbonBudgetError):
    """MLflow could not take the execution; the snapshot stays in the outbox for `carbon-budget sync`."""


@dataclass(frozen=True)
class Published:
    execution_id: str
    parent_run_id: str
    experiment_id: str
    new_runs: int
    ui_url: str


def ui_url(uri: str, experiment_id: str) -> str:
    """Where the training-runs table is; MLflow 3 opens its GenAI view unless the URL asks for this one. Printed
    in CI logs, so without the credentials a URI may hold."""
    base = (
        without_credentials(uri).rstrip("/")
        if uri.lower().startswith(("http://", "https://"))
        else "http://127.0.0.1:5000"
    )
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def epoch_ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp() * 1000)


def experiment_id_of(client: Any, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location, path = None, store.sqlite_path(uri)
    if path is not None:
        # fixed at creation; relative to the store, not to whatever directory the first run started in
        location = (path.parent / "mlartifacts").as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:  # MLflow raises many types; on a shared server another client may have just created it
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def find_run(client: Any, experiment_id: str, tag: str, value: str) -> Any:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = '{value}'", max_results=1)
    return runs[0] if runs else None


def metric_batch(values: dict[str, float], timestamp: int) -> list[Any]:
    from mlflow.entities import Metric

    return [Metric(_metric_key(key), value, timestamp, 0) for key, value in sorted(values.items())]


def _metric_key(name: str) -> str:
    """MLflow refuses some characters in metric names, such as the @ of DVC's foreach stages (distill@small)."""
    return re.sub(r"[^\w\-. :/]", "_", name)


def _publish_stage(client: Any, experiment_id: str, parent_id: str, entry: dict[str, Any], folder: Path) -> None:
    record = EmissionRecord.model_validate(entry["record"])
    run = client.create_run(
        experiment_id,
        start_time=epoch_ms(record.started_at),
        run_name=record.stage,
        tags={
            TAG_PARENT_RUN: parent_id,
            TAG_RECORD: record.record_id,
            TAG_STAGE: record.stage,
        },
    )
    _fill_stage(client, run.info.run_id, record, entry, folder)


def _fill_stage(client: Any, run_id: str, record: EmissionRecord, entry: dict[str, Any], folder: Path) -> None:
    """Everything a stage's run holds besides the tags that identify it, then its end; safe to repeat on a run that
    already holds part of it (MLflow skips a metric logged twice and accepts a param logged again unchanged)."""
    from mlflow.entities import Param, RunTag

    flat_params = flatten(record.params) | {"carbon.pue_applied": record.pue}
    metrics = {**entry["metrics"], **record.extra_metrics, **record.figures()}
    client.log_batch(
        run_id,
        metrics=metric_batch(metrics, epoch_ms(record.ended_at)),
        params=[Param(k, str(v)[:6000]) for k, v in sorted(flat_params.items())],
        tags=[
            RunTag(TAG_STATUS, record.status),
            RunTag(TAG_MEASUREMENT, record.methods.summary()),
            RunTag(f"{TAG_METHOD}cpu", record.methods.cpu),
            RunTag(f"{TAG_METHOD}gpu", record.methods.gpu),
            RunTag(f"{TAG_METHOD}ram", record.methods.ram),
            RunTag(TAG_TRACKING_MODE, record.tracking_mode),
            RunTag(TAG_INTENSITY_SOURCE, record.carbon_intensity_source),
            RunTag(TAG_HARDWARE_CPU, record.hardware.cpu_model),
            RunTag(TAG_HARDWARE_GPU, record.hardware.gpu_model or "none"),
            RunTag(TAG_FINGERPRINT, fingerprint_id(record.model_dump(mode="json"))),
            *(RunTag(f"{PREFIX}{k}", v) for k, v in sorted(record.tags.items())),
        ],
    )
    for artifact in entry["artifacts"]:
        client.log_artifact(run_id, str(folder / artifact))
    status = {"completed": "FINISHED", "running": "KILLED"}.get(record.status, "FAILED")
    client.set_terminated(run_id, status=status, end_time=epoch_ms(record.ended_at))


def _cut_off(run: Any, parent_id: str) -> bool:
    """A run of this execution that an earlier publish created but never finished (MLflow went away between
    the calls): it holds only its tags, so it is completed rather than counted as already logged."""
    return bool(run.info.status == "RUNNING" and run.data.tags.get(TAG_PARENT_RUN) == parent_id)


# a carbon-aware execution's figures: intensity if started at once, predicted and realised (g/kWh), the saving (% and
# g) and the energy it is charged on (the records that ran inside the wait)
_CARBON_AWARE_FIGURES = (
    "now_g_per_kwh",
    "predicted_g_per_kwh",
    "realised_g_per_kwh",
    "saving_pct",
    "saving_g",
    "energy_kwh",
)


def _parent_metrics(snapshot: dict[str, Any]) -> dict[str, float]:
    """The figures people compare across executions; the same keys every time so Compare lines up."""
    verdict = snapshot["verdict"]
    metrics = {
        "energy_kwh": verdict["energy_kwh"],
        "energy_wh": verdict["energy_kwh"] * 1000,
        "co2_kg": verdict["co2_kg"],
        "co2_g": verdict["co2_kg"] * 1000,
        "duration_s": verdict["duration_s"],
        "gate_passed": 1.0 if verdict["passed"] else 0.0,
    }
    for key in ("test_accuracy", "model_size_mb", "parameters"):
        if isinstance(verdict.get(key), int | float):
            metrics[key] = float(verdict[key])
    if verdict["energy_kwh"] > 0 and "test_accuracy" in metrics:
        metrics["accuracy_per_kwh"] = metrics["test_accuracy"] / verdict["energy_kwh"]
    for unit, score in (verdict.get("sci") or {}).items():  # Software Carbon Intensity, term by term
        for term in ("sci_g", "energy_kwh", "intensity_g_per_kwh", "operational_g", "embodied_g"):
            if isinstance(score, dict) and isinstance(score.get(term), int | float):
                metrics[f"sci.{unit}.{term}"] = float(score[term])
    lifetime = verdict.get("lifetime") or {}
    for key in ("co2_kg", "training_co2_kg", "inference_co2_kg", "energy_kwh", "predictions"):
        if isinstance(lifetime.get(key), int | float):
            metrics[f"lifetime.{key}"] = float(lifetime[key])
    carbon_aware = verdict.get("carbon_aware") or {}
    for key in _CARBON_AWARE_FIGURES:
        if isinstance(carbon_aware.get(key), int | float):
            metrics[f"{CARBON_AWARE_METRIC}{key}"] = float(carbon_aware[key])
    for stage, figures in verdict["stages"].items():
        metrics[f"{stage}.energy_kwh"] = figures["energy_kwh"]
        metrics[f"{stage}.energy_wh"] = figures["energy_kwh"] * 1000
        metrics[f"{stage}.co2_g"] = figures["co2_kg"] * 1000
        metrics[f"{stage}.duration_s"] = figures["duration_s"]
    return metrics


def open_client(uri: str) -> Any:
    """An MLflow client whose store exists and is migrated: creation is serialised for sqlite stores."""
    for name, value in _MLFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)
    import mlflow

    def open_store() -> Any:
        client = mlflow.MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # creates and migrates a new sqlite store
        return client

    return store.opened(uri, mlflow.__version__, open_store)


def warm_up(uri: str) -> None:
    """Pay MLflow's import and store opening now (the background worker calls this while stages run)."""
    with contextlib.suppress(Exception):
        open_client(uri)


def publish(folder: Path, uri: str | None = None) -> Published:
    """Log one snapshot to MLflow; safe to repeat (runs already there are found by tag and skipped)."""
    uri = uri or tracking_uri()
    snapshot = read_snapshot(folder)
    try:
        from mlflow.entities import Param, RunTag

        client = open_client(uri)
        with store.locked(uri):
            experiment_id = experiment_id_of(client, snapshot["experiment"], uri)
        execution_id = snapshot["execution_id"]
        parent = find_run(client, experiment_id, TAG_EXECUTION, execution_id)
        new_runs = 0
        entries = snapshot["entries"]
        started = min(epoch_ms(e["record"]["started_at"]) for e in entries)
        ended = max(epoch_ms(e["record"]["ended_at"]) for e in entries)
        if parent is None:
            verdict = "passed" if snapshot["verdict"]["passed"] else "failed"
            name = snapshot["dvc_experiment"] or f"{snapshot['git']['branch'] or 'pipeline'}-{execution_id[:8]}"
            parent = client.create_run(
                experiment_id,
                start_time=started,
                run_name=name,
                tags={TAG_EXECUTION: execution_id, TAG_VERDICT: verdict},
            )
            new_runs += 1
        parent_id = parent.info.run_id
        cached = []
        for entry in entries:
            found = find_run(client, experiment_id, TAG_RECORD, entry["record"]["record_id"])
            if found is None:
                _publish_stage(client, experiment_id, parent_id, entry, folder)
            elif _cut_off(found, parent_id):
                _fill_stage(client, found.info.run_id, EmissionRecord.model_validate(entry["record"]), entry, folder)
            else:
                cached.append(entry["record"]["stage"])
                continue
            new_runs += 1
        verdict_doc = snapshot["verdict"]
        tags = [
            RunTag(TAG_VERDICT, "passed" if verdict_doc["passed"] else "failed"),
            RunTag(TAG_MEASUREMENT, str(verdict_doc["measurement"])),
            RunTag(TAG_CACHED_STAGES, ",".join(cached) or "none"),
            RunTag(TAG_GIT_COMMIT, snapshot["git"]["commit"] or "unknown"),
            RunTag(TAG_GIT_BRANCH, snapshot["git"]["branch"] or "unknown"),
        ]
        if verdict_doc["failures"]:
            tags.append(RunTag(TAG_FAILURES, "\n".join(verdict_doc["failures"])[:4900]))
        carbon_aware = verdict_doc.get("carbon_aware") or {}
        for tag, key in ((TAG_CARBON_AWARE_SOURCE, "source"), (TAG_CARBON_AWARE_SIGNAL, "signal")):
            if carbon_aware.get(key):
                tags.append(RunTag(tag, str(carbon_aware[key])[:4900]))
        client.log_batch(
            parent_id,
            metrics=metric_batch(_parent_metrics(snapshot), ended),
            params=[Param(k, v[:6000]) for k, v in sorted(snapshot["params"].items())],
            tags=tags,
        )
        for artifact in snapshot.get("artifacts", []):
            client.log_artifact(parent_id, str(folder / artifact))
        client.set_terminated(parent_id, status="FINISHED", end_time=ended)
    except Exception as exc:  # MLflow raises many types (connection, locked db, REST errors)
        raise publish_error(uri, "the runs", exc) from None
    return Published(execution_id, parent_id, experiment_id, new_runs, ui_url(uri, experiment_id))


def publish_error(uri: str, what: str, exc: Exception) -> PublishError:
    """One message for every MLflow failure, redacted: MLflow's own messages repeat the request URL, with any
    user:password@ a tracking URI holds (redacted before it is cut, so no part of a secret is left)."""
    return PublishError(
        f"MLflow at {redact(uri)} did not take {what} ({type(exc).__name__}: {redact(str(exc), uri)[:300]})"
    )


def attach_pictures(folder: Path, uri: str) -> None:
    """Draw the execution's pictures in its work tree and log each to the run it belongs to."""
    from carbon_budget.publish import plots

    snapshot = read_snapshot(folder)
    work_dir = Path(snapshot["work_dir"])
    if not work_dir.is_dir():
        return  # a queued experiment's temporary copy, already gone: its pictures go with it
    plots.draw_execution(str(work_dir), snapshot["budgeted_stages"], snapshot.get("pictures", []))
    try:
        client = open_client(uri)
        experiment_id = experiment_id_of(client, snapshot["experiment"], uri)
        targets = [(TAG_EXECUTION, snapshot["execution_id"], snapshot.get("late_artifacts", []))]
        targets += [(TAG_RECORD, e["record"]["record_id"], e.get("late_artifacts", [])) for e in snapshot["entries"]]
        for tag, value, paths in targets:
            present = [work_dir / p for p in paths if (work_dir / p).is_file()]
            run = find_run(client, experiment_id, tag, value) if present else None
            if run is None:
                continue
            for path in present:
                client.log_artifact(run.info.run_id, str(path))
    except Exception as exc:  # MLflow raises many types
        raise publish_error(uri, "the pictures", exc) from None
