"""MLflow: one parent run per pipeline execution, one nested run per stage; the only module that imports mlflow.

Local first, published once. Stages write only files; the gate writes an execution snapshot to
.carbon-budget/outbox/<execution_id>/ (the records, their metric values and copies of their artifacts) before
any MLflow call, then publishes it from one process with the stages' real start and end times. Paying
MLflow's start-up (~2-3 s here) once per execution instead of once per stage is most of what keeps a cold
`dvc repro` close to a plain script. A snapshot leaves the outbox only when MLflow holds all of it; if the
server is down, `carbon-budget sync` replays it later. Every run is tagged with the id of what it logs, so a
replay never logs anything twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.files import read_json, write_json
from carbon_budget.gate.evidence import Evidence
from carbon_budget.layout import tracking_uri
from carbon_budget.measure.energy import charge_usage, tree_cpu_seconds
from carbon_budget.measure.memory import tree_rss_gb
from carbon_budget.measure.stage import build_record
from carbon_budget.publish import store, worker
from carbon_budget.publish.redact import redact, without_credentials
from carbon_budget.records.record import EmissionRecord, save_record
from carbon_budget.report.noise import fingerprint_id

TAG_EXECUTION = "carbon_budget.execution_id"
TAG_RECORD = "carbon_budget.record_id"
TAG_MODEL = "carbon_budget.model"
# TAG_MODEL's values: registered (when params name a model), or logged for inspection after a failed gate
MODEL_LOGGED, MODEL_NOT_REGISTERED = "logged", "logged, not registered: gate failed"
# what measured a stage's record (report.noise.fingerprint_id): history compares only runs measured alike
TAG_FINGERPRINT = "carbon_budget.fingerprint"
SNAPSHOT_FILE = "snapshot.json"
DELIVERY_LOCK = ".delivering.lock"
# MLflow runs this file, not the tool: it wraps a TorchScript file as a pyfunc model (see `_log_model`)
TORCHSCRIPT_MODEL_CODE = Path(__file__).with_name("torchscript_model.py")
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


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value


def _numbers(path: Path) -> dict[str, float]:
    """Numeric leaves of a metrics JSON file, flattened with dots (nested per-class reports stay out)."""
    flat: dict[str, Any] = {}
    _flatten("", read_json(path), flat)
    return {k: float(v) for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _within(work_dir: Path, listed: str) -> bool:
    """True when a file a record lists really lies in the project: a record's paths are checked to be relative
    and without `..`, but a symlink committed beside it could still point at ~/.ssh, and CI would log it."""
    return (work_dir / listed).resolve().is_relative_to(work_dir.resolve())


def write_snapshot(
    experiment: str,
    params: dict[str, Any],
    verdict: dict[str, Any],
    budgeted: list[EmissionRecord],
    others: list[EmissionRecord],
    work_dir: Path,
    execution_artifacts: list[Path],
    pictures: list[dict[str, str]],
) -> Path:
    """Freeze everything one execution publishes, before MLflow is touched. `pictures` are drawn after the runs
    are in (see `plots.draw_execution`)."""
    execution_id = uuid.uuid4().hex
    folder = work_dir / layout.OUTBOX_DIR / execution_id
    entries = []
    # the tool's own line is shown on the parent run (the verdict's stages), not as a child run of this execution
    for record in (r for r in [*budgeted, *others] if r.stage != layout.ITSELF):
        metrics: dict[str, float] = {}
        for metrics_file in (m for m in record.metrics_files if _within(work_dir, m)):
            metrics.update(_numbers(work_dir / metrics_file))
        copies = []
        for artifact in (a for a in record.artifacts if (work_dir / a).is_file() and _within(work_dir, a)):
            target = folder / "artifacts" / record.record_id / Path(artifact).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(work_dir / artifact, target)
            copies.append(target.relative_to(folder).as_posix())
        late = [a for a in record.artifacts if not (work_dir / a).is_file()]  # drawn after the runs are in
        entries.append(
            {"record": record.model_dump(mode="json"), "metrics": metrics, "artifacts": copies, "late_artifacts": late}
        )
    parent_copies = []
    for picture in (a for a in execution_artifacts if (work_dir / a).is_file()):
        target = folder / "artifacts" / "execution" / picture.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work_dir / picture, target)
        parent_copies.append(target.relative_to(folder).as_posix())
    flat_params: dict[str, Any] = {}
    _flatten("", params, flat_params)
    write_json(
        folder / SNAPSHOT_FILE,
        {
            "execution_id": execution_id,
            "experiment": experiment,
            "git": {"commit": _git("rev-parse", "HEAD"), "branch": _git("rev-parse", "--abbrev-ref", "HEAD")},
            "dvc_experiment": os.environ.get("DVC_EXP_NAME", ""),
            "params": {k: str(v) for k, v in flat_params.items()},
            "verdict": verdict,
            "budgeted_stages": [r.stage for r in budgeted if r.stage != layout.ITSELF],
            "entries": entries,
            "artifacts": parent_copies,
            "late_artifacts": [a.as_posix() for a in execution_artifacts if not (work_dir / a).is_file()],
            "work_dir": str(work_dir.resolve()),
            "pictures": pictures,
        },
    )
    return folder


def _ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp() * 1000)


def _experiment_id(client: Any, name: str, uri: str) -> str:
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


def _find_run(client: Any, experiment_id: str, tag: str, value: str) -> Any:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = '{value}'", max_results=1)
    return runs[0] if runs else None


def _metric_batch(values: dict[str, float], timestamp: int) -> list[Any]:
    from mlflow.entities import Metric

    return [Metric(_metric_key(key), value, timestamp, 0) for key, value in sorted(values.items())]


def _metric_key(name: str) -> str:
    """MLflow refuses some characters in metric names, such as the @ of DVC's foreach stages (distill@small)."""
    return re.sub(r"[^\w\-. :/]", "_", name)


def _publish_stage(client: Any, experiment_id: str, parent_id: str, entry: dict[str, Any], folder: Path) -> None:
    record = EmissionRecord.model_validate(entry["record"])
    run = client.create_run(
        experiment_id,
        start_time=_ms(record.started_at),
        run_name=record.stage,
        tags={
            "mlflow.parentRunId": parent_id,
            TAG_RECORD: record.record_id,
            "carbon_budget.stage": record.stage,
        },
    )
    _fill_stage(client, run.info.run_id, record, entry, folder)


def _fill_stage(client: Any, run_id: str, record: EmissionRecord, entry: dict[str, Any], folder: Path) -> None:
    """Everything a stage's run holds besides the tags that identify it, then its end; safe to repeat on a run that
    already holds part of it (MLflow skips a metric logged twice and accepts a param logged again unchanged)."""
    from mlflow.entities import Param, RunTag

    flat_params: dict[str, Any] = {}
    _flatten("", record.params, flat_params)
    flat_params["carbon.pue_applied"] = record.pue
    metrics = {**entry["metrics"], **record.extra_metrics, **record.figures()}
    client.log_batch(
        run_id,
        metrics=_metric_batch(metrics, _ms(record.ended_at)),
        params=[Param(k, str(v)[:6000]) for k, v in sorted(flat_params.items())],
        tags=[
            RunTag("carbon_budget.status", record.status),
            RunTag("carbon_budget.measurement", record.methods.summary()),
            RunTag("carbon_budget.method.cpu", record.methods.cpu),
            RunTag("carbon_budget.method.gpu", record.methods.gpu),
            RunTag("carbon_budget.method.ram", record.methods.ram),
            RunTag("carbon_budget.tracking_mode", record.tracking_mode),
            RunTag("carbon_budget.intensity_source", record.intensity_source),
            RunTag("carbon_budget.hardware.cpu", record.hardware.cpu_model),
            RunTag("carbon_budget.hardware.gpu", record.hardware.gpu_model or "none"),
            RunTag(TAG_FINGERPRINT, fingerprint_id(record.model_dump(mode="json"))),
            *(RunTag(f"carbon_budget.{k}", v) for k, v in sorted(record.tags.items())),
        ],
    )
    for artifact in entry["artifacts"]:
        client.log_artifact(run_id, str(folder / artifact))
    status = {"completed": "FINISHED", "running": "KILLED"}.get(record.status, "FAILED")
    client.set_terminated(run_id, status=status, end_time=_ms(record.ended_at))


def _cut_off(run: Any, parent_id: str) -> bool:
    """A run of this execution that an earlier publish created but never finished (MLflow went away between
    the calls): it holds only its tags, so it is completed rather than counted as already logged."""
    return bool(run.info.status == "RUNNING" and run.data.tags.get("mlflow.parentRunId") == parent_id)


def log_deployed_model(folder: Path, uri: str | None = None) -> bool:
    """Log the snapshot's deployed artifact as an MLflow model on its stage's run; True when one was logged.

    Separate from `publish` because it costs about a second (MLflow writes and registers a model): the
    background worker does it after the gate has its answer. A tag on the run makes a replay skip it. The model is
    registered (when params name one) only for an execution whose gate passed: a failing one is logged for
    inspection, tagged as such, and never becomes a version in the registry.
    """
    uri = uri or tracking_uri()
    snapshot = read_json(folder / SNAPSHOT_FILE)
    try:
        client = open_client(uri)
        for entry in snapshot["entries"]:
            tags = entry["record"].get("tags", {})
            if "deploy_format" not in tags:
                continue
            experiment_id = _experiment_id(client, snapshot["experiment"], uri)
            run = _find_run(client, experiment_id, TAG_RECORD, entry["record"]["record_id"])
            passed = snapshot["verdict"].get("passed") is True
            state = run.data.tags.get(TAG_MODEL) if run is not None else None
            # an artifact logged when its gate failed is logged again, registered, once a later gate passes it
            if run is None or state == MODEL_LOGGED or (state == MODEL_NOT_REGISTERED and not passed):
                return False
            if not passed:  # logged for inspection only: what ships is what passed the gate
                tags = {k: v for k, v in tags.items() if k != "registered_model_name"}
            _log_model(uri, run.info.run_id, tags, [folder / a for a in entry["artifacts"]])
            client.set_tag(run.info.run_id, TAG_MODEL, MODEL_LOGGED if passed else MODEL_NOT_REGISTERED)
            return True
    except Exception as exc:  # MLflow raises many types
        raise _publish_error(uri, "the model", exc) from None
    return False


def _log_model(uri: str, run_id: str, tags: dict[str, str], files: list[Path]) -> None:
    """The deployed artifact as an MLflow model with a signature (registered when params name a model), so it can be
    served or compared like any MLflow model.

    Logged as the file export wrote, without loading it: a TorchScript file through `torchscript_model` (a pyfunc
    that imports torch only where the model is used), an ONNX file with `mlflow.onnx`. The signature is stated and
    no input example is given: MLflow validates an example by loading the model and predicting with it, which cost
    the background worker torch's import (1.5 CPU-seconds) after every execution. The example stays a file of the
    stage's run (`deploy_input_example`)."""
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    mlflow.set_tracking_uri(uri)
    by_name = {f.name: f for f in files}
    artifact = by_name.get(Path(tags["deploy_artifact"]).name)
    if artifact is None:
        return
    width = -1
    example_file = by_name.get(Path(tags.get("deploy_input_example", "")).name)
    if example_file is not None:  # a JSON {"input": [[...], ...]} the export step names in the tag
        width = len(read_json(example_file)["input"][0])
    onnx_format = tags["deploy_format"].startswith("onnx")
    signature = ModelSignature(  # an unnamed input reaches a pyfunc's predict as an array, not a dict of one
        Schema([TensorSpec(np.dtype(np.float32), (-1, width), "input" if onnx_format else None)]),
        Schema([TensorSpec(np.dtype(np.float32), (-1, -1), "logits")]),
    )
    common: dict[str, Any] = {
        "name": "model",
        "signature": signature,
        "registered_model_name": tags.get("registered_model_name"),
    }
    with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
        # MLflow warns that no input example was given: it is left out on purpose (see above)
        warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
        if onnx_format:
            import onnx

            mlflow.onnx.log_model(onnx.load(str(artifact)), pip_requirements=["onnxruntime", "onnx"], **common)
        else:
            mlflow.pyfunc.log_model(
                python_model=str(TORCHSCRIPT_MODEL_CODE),
                artifacts={"torchscript": str(artifact)},  # the name torchscript_model.py loads it by
                pip_requirements=[f"torch=={version('torch').split('+')[0]}", "numpy"],
                **common,
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
    snapshot = read_json(folder / SNAPSHOT_FILE)
    try:
        from mlflow.entities import Param, RunTag

        client = open_client(uri)
        with store.locked(uri):
            experiment_id = _experiment_id(client, snapshot["experiment"], uri)
        execution_id = snapshot["execution_id"]
        parent = _find_run(client, experiment_id, TAG_EXECUTION, execution_id)
        new_runs = 0
        entries = snapshot["entries"]
        started = min(_ms(e["record"]["started_at"]) for e in entries)
        ended = max(_ms(e["record"]["ended_at"]) for e in entries)
        if parent is None:
            verdict = "passed" if snapshot["verdict"]["passed"] else "failed"
            name = snapshot["dvc_experiment"] or f"{snapshot['git']['branch'] or 'pipeline'}-{execution_id[:8]}"
            parent = client.create_run(
                experiment_id,
                start_time=started,
                run_name=name,
                tags={TAG_EXECUTION: execution_id, "carbon_budget.verdict": verdict},
            )
            new_runs += 1
        parent_id = parent.info.run_id
        cached = []
        for entry in entries:
            found = _find_run(client, experiment_id, TAG_RECORD, entry["record"]["record_id"])
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
            RunTag("carbon_budget.verdict", "passed" if verdict_doc["passed"] else "failed"),
            RunTag("carbon_budget.measurement", str(verdict_doc["measurement"])),
            RunTag("carbon_budget.cached_stages", ",".join(cached) or "none"),
            RunTag("mlflow.source.git.commit", snapshot["git"]["commit"] or "unknown"),
            RunTag("git.branch", snapshot["git"]["branch"] or "unknown"),
        ]
        if verdict_doc["failures"]:
            tags.append(RunTag("carbon_budget.failures", "\n".join(verdict_doc["failures"])[:4900]))
        client.log_batch(
            parent_id,
            metrics=_metric_batch(_parent_metrics(snapshot), ended),
            params=[Param(k, v[:6000]) for k, v in sorted(snapshot["params"].items())],
            tags=tags,
        )
        for artifact in snapshot.get("artifacts", []):
            client.log_artifact(parent_id, str(folder / artifact))
        client.set_terminated(parent_id, status="FINISHED", end_time=ended)
    except Exception as exc:  # MLflow raises many types (connection, locked db, REST errors)
        raise _publish_error(uri, "the runs", exc) from None
    return Published(execution_id, parent_id, experiment_id, new_runs, ui_url(uri, experiment_id))


def _publish_error(uri: str, what: str, exc: Exception) -> PublishError:
    """One message for every MLflow failure, redacted: MLflow's own messages repeat the request URL, with any
    user:password@ a tracking URI holds (redacted before it is cut, so no part of a secret is left)."""
    return PublishError(
        f"MLflow at {redact(uri)} did not take {what} ({type(exc).__name__}: {redact(str(exc), uri)[:300]})"
    )


def pending(work_dir: Path) -> list[Path]:
    """Snapshots not yet in MLflow, oldest first."""
    outbox = work_dir / layout.OUTBOX_DIR
    if not outbox.is_dir():
        return []
    folders = [p for p in outbox.iterdir() if (p / SNAPSHOT_FILE).is_file() and not _being_delivered(p)]
    return sorted(folders, key=lambda p: (p / SNAPSHOT_FILE).stat().st_mtime)


@contextmanager
def delivering(folder: Path) -> Iterator[None]:
    """Hold one snapshot for the whole of its delivery (runs, pictures, model, removal from the outbox).

    The worker finishes a delivery after the gate has its answer; a `carbon-budget sync` run meanwhile (a CI
    job syncing right after `dvc repro`) delivered the same snapshot a second time, logged the model twice and
    failed on the files the worker had just removed."""
    with (folder / DELIVERY_LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _being_delivered(folder: Path) -> bool:
    """True while another process holds the snapshot (or has just removed it)."""
    try:
        with (folder / DELIVERY_LOCK).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    return False


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
        snapshot = read_json(folder / SNAPSHOT_FILE)
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
    record = build_record(
        stage=layout.ITSELF,
        reading=reading,
        started_at=datetime.fromtimestamp(began, UTC).isoformat(timespec="milliseconds"),
        status="completed",
        error=None,
        params={},
        outputs={},
        metrics_files=[],
        artifacts=[],
        extra_metrics={"tool_stages_cpu_s": tools_cpu_s} if tools else {},
        tags={"covers": covers, "execution_id": str(snapshot.get("execution_id", ""))},
    )
    save_record(Path(snapshot["work_dir"]) / layout.ITSELF_RECORD, record)
    if parent_id is not None:
        with contextlib.suppress(Exception):  # MLflow raises many types; the record above already holds the figures
            figures = {"energy_kwh": record.energy_kwh, "co2_kg": record.co2_kg, "cpu_s": cpu_s + tools_cpu_s}
            metrics = {f"carbon_budget_itself.{key}": value for key, value in figures.items()}
            open_client(uri).log_batch(parent_id, metrics=_metric_batch(metrics, _ms(record.ended_at)))
    return record


def finish_delivery(folder: Path, uri: str) -> None:
    """The slow tail of a delivery, after the runs are in: draw the pictures and attach them to their runs,
    log the deployed model, then the snapshot leaves the outbox."""
    attach_pictures(folder, uri)
    log_deployed_model(folder, uri)
    shutil.rmtree(folder, ignore_errors=True)


def attach_pictures(folder: Path, uri: str) -> None:
    """Draw the execution's pictures in its work tree and log each to the run it belongs to."""
    from carbon_budget.publish import plots

    snapshot = read_json(folder / SNAPSHOT_FILE)
    work_dir = Path(snapshot["work_dir"])
    if not work_dir.is_dir():
        return  # a queued experiment's temporary copy, already gone: its pictures go with it
    plots.draw_execution(str(work_dir), snapshot["budgeted_stages"], snapshot.get("pictures", []))
    try:
        client = open_client(uri)
        experiment_id = _experiment_id(client, snapshot["experiment"], uri)
        targets = [(TAG_EXECUTION, snapshot["execution_id"], snapshot.get("late_artifacts", []))]
        targets += [(TAG_RECORD, e["record"]["record_id"], e.get("late_artifacts", [])) for e in snapshot["entries"]]
        for tag, value, paths in targets:
            present = [work_dir / p for p in paths if (work_dir / p).is_file()]
            run = _find_run(client, experiment_id, tag, value) if present else None
            if run is None:
                continue
            for path in present:
                client.log_artifact(run.info.run_id, str(path))
    except Exception as exc:  # MLflow raises many types
        raise _publish_error(uri, "the pictures", exc) from None


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
