"""A real shared `mlflow server` on 127.0.0.1: the pipeline logs to it, credentials stay out of every file and
message, a server stopped mid-pipeline loses nothing, and two clones running at once both land in it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbon_budget.publish.worker import URI_ENV
from tests.conftest import BIN, edit_params, run

pytestmark = pytest.mark.integration

SECRET = f"pw-{uuid.uuid4().hex}"  # made at run time: the copied test file must not hold it
STAGES = ("preprocess", "train", "evaluate", "export", "gate")


class MlflowServer:
    """`mlflow server` with a sqlite backend and an artifact store, as a team would run it; it can be stopped
    and started again on the same port and store mid-test."""

    def __init__(self, home: Path) -> None:
        self.home = home
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.store = home / "mlflow.db"
        self.artifacts = home / "artifacts"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait for /health: 11-34 s on this shared 2-core host, even with one worker and no job runner."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        command = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.store}",
            "--artifacts-destination",
            str(self.artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        with (self.home / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.home, env=env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mlflow server exited: {(self.home / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        raise AssertionError("mlflow server did not answer /health within 90 s")

    def stop(self) -> None:
        """Stop the server and everything it started; the port is free when this returns."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # uvicorn's worker, should it outlive its parent
        self.process = None

    def api(self, endpoint: str, body: dict[str, Any] | None = None) -> Any:
        """Call the server's REST API (GET without a body, POST with one)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{endpoint}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def runs(self, experiment: str) -> list[dict[str, Any]]:
        """Every run of the experiment, read back through the REST API, each with its tags and metrics as
        dicts."""
        found = self.api(f"experiments/get-by-name?experiment_name={experiment}")
        experiment_id = found["experiment"]["experiment_id"]
        runs = self.api("runs/search", {"experiment_ids": [experiment_id], "max_results": 1000}).get("runs", [])
        for item in runs:
            data = item.setdefault("data", {})
            data["tags"] = {t["key"]: t["value"] for t in data.get("tags", [])}
            data["metrics"] = {m["key"]: m["value"] for m in data.get("metrics", [])}
        return list(runs)


def stop_workers(server: MlflowServer) -> None:
    """Background workers publishing to the server (their environment names its address) idle out after
    minutes: stop them now so the next test starts from nothing."""
    import psutil

    address = f"127.0.0.1:{server.port}"
    for process in psutil.process_iter(["cmdline", "environ"]):
        cmdline = process.info["cmdline"] or []
        if "carbon_budget.publish.service" in cmdline and address in (process.info["environ"] or {}).get(URI_ENV, ""):
            process.terminate()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One server for the module, each test in its own experiment: a start costs 11-34 s here."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(shared_server: MlflowServer) -> Iterator[MlflowServer]:
    """The shared server, running (a test may stop and restart it), with no worker left publishing to it."""
    if shared_server.process is None:
        shared_server.start()
    yield shared_server
    stop_workers(shared_server)


def client_env(tool_env: dict[str, str], server: MlflowServer) -> dict[str, str]:
    """What a team member's shell holds: the server's URI, credentials only in the environment."""
    return {
        **tool_env,
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": SECRET,
    }


def wait_for_empty_outbox(repo: Path, timeout_s: float = 90) -> None:
    """The worker logs pictures and the model after the gate has its answer; the snapshot leaves the outbox
    once MLflow holds all of it."""
    outbox = repo / ".carbon-budget/outbox"
    deadline = time.time() + timeout_s
    while outbox.is_dir() and any(outbox.iterdir()) and time.time() < deadline:
        time.sleep(0.5)
    assert not outbox.is_dir() or not any(outbox.iterdir()), list(outbox.iterdir())


def executions(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Parent run id -> its child runs; every run is either a parent or a child of one."""
    parents = {r["info"]["run_id"]: [] for r in runs if "mlflow.parentRunId" not in r["data"]["tags"]}
    children: dict[str, list[dict[str, Any]]] = parents
    for item in runs:
        parent = item["data"]["tags"].get("mlflow.parentRunId")
        if parent is not None:
            children[parent].append(item)
    return children


def assert_complete_execution(parent: dict[str, Any], children: list[dict[str, Any]]) -> None:
    """One finished parent, and one finished child per stage, each with its energy."""
    assert parent["info"]["status"] == "FINISHED"
    assert parent["data"]["metrics"]["energy_kwh"] > 0 and parent["data"]["metrics"]["gate_passed"] == 1.0
    assert sorted(c["data"]["tags"]["carbon_budget.stage"] for c in children) == sorted(STAGES)
    for child in children:
        assert child["info"]["status"] == "FINISHED", child["data"]["tags"]["carbon_budget.stage"]
        assert child["data"]["metrics"]["energy_kwh"] > 0 and child["data"]["metrics"]["co2_kg"] > 0
        assert child["data"]["tags"]["carbon_budget.method.cpu"].startswith(("estimated:", "measured:"))


@contextlib.contextmanager
def worker_command_lines() -> Iterator[list[tuple[list[str], str]]]:
    """The command line of every publishing worker seen while the block runs, with the store it serves (from its
    environment, never its command line), sampled every 0.1 s: a worker exits seconds after its job, so looking
    once at the end would find none and prove nothing."""
    import psutil

    seen: list[tuple[list[str], str]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            for process in psutil.process_iter(["cmdline", "environ"]):
                cmdline = process.info["cmdline"] or []
                worker = (cmdline, (process.info["environ"] or {}).get(URI_ENV, ""))
                if "carbon_budget.publish.service" in cmdline and worker not in seen:
                    seen.append(worker)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def assert_secret_nowhere(
    server: MlflowServer, output: str, workers: list[tuple[list[str], str]], *roots: Path
) -> None:
    """Not in what was printed, nor in any file under `roots` (sqlite pages, logs, artifacts, git objects,
    the outbox), nor in the background workers' logs or command lines (which anyone on the machine can read)."""
    assert SECRET not in output
    assert not [c for c, _ in workers if SECRET in " ".join(c)]
    assert [u for _, u in workers if f":{server.port}" in u]  # a worker for this server was seen
    logs = list(Path(tempfile.gettempdir()).glob(f"carbon-budget-{os.getuid()}-*.log"))
    files = [p for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert not [p for p in [*files, *logs] if SECRET.encode() in p.read_bytes()]


def half_publish(server: MlflowServer, snapshot: dict[str, Any], experiment: str, stage: str) -> None:
    """Leave what a publish cut off by the server leaves: the parent and one stage's run created, nothing logged
    on them, both still RUNNING (the calls `runs.publish` makes first, with the same identifying tags)."""
    experiment_id = server.api("experiments/create", {"name": experiment})["experiment_id"]
    parent = server.api(
        "runs/create",
        {
            "experiment_id": experiment_id,
            "tags": [{"key": "carbon_budget.execution_id", "value": snapshot["execution_id"]}],
        },
    )["run"]
    entry = next(e for e in snapshot["entries"] if e["record"]["stage"] == stage)
    tags = {
        "mlflow.parentRunId": parent["info"]["run_id"],
        "carbon_budget.record_id": entry["record"]["record_id"],
        "carbon_budget.stage": stage,
    }
    server.api(
        "runs/create",
        {"experiment_id": experiment_id, "run_name": stage, "tags": [{"key": k, "value": v} for k, v in tags.items()]},
    )


def test_server_stopped_mid_pipeline_then_sync_loses_nothing_and_duplicates_nothing(
    project: Path, tool_env: dict[str, str], server: MlflowServer
) -> None:
    edit_params(project, mlflow={"experiment": "outage"})
    # credentials in the URI this time, the other form teams use: printed URLs and messages must drop them
    env = {**tool_env, "MLFLOW_TRACKING_URI": f"http://alice:{SECRET}@127.0.0.1:{server.port}"}
    with (
        worker_command_lines() as workers,
        (project.parent / "repro.out").open("w") as out,
        (project.parent / "repro.err").open("w") as err,
    ):
        repro = subprocess.Popen(["dvc", "repro"], cwd=project, env=env, stdout=out, stderr=err, text=True)
        deadline = time.time() + 120
        while "Running stage 'evaluate'" not in (project.parent / "repro.out").read_text():
            assert repro.poll() is None and time.time() < deadline, (project.parent / "repro.err").read_text()
            time.sleep(0.2)
        server.stop()  # the server goes away while the pipeline runs: train is done, evaluate is starting
        repro.wait(timeout=300)
    stdout, stderr = (project.parent / "repro.out").read_text(), (project.parent / "repro.err").read_text()
    assert repro.returncode == 0 and "gate: PASSED" in stdout, stdout + stderr
    assert stderr.count("did not take the runs") == 1  # warned once; the snapshot waits in the outbox
    [folder] = (project / ".carbon-budget/outbox").iterdir()
    snapshot = json.loads((folder / "snapshot.json").read_text())

    server.start()  # back on the same port and store
    half_publish(server, snapshot, "outage", "train")  # and a first sync was cut off after two calls
    synced = run(["carbon-budget", "sync"], project, env)
    assert "synced" in synced.stdout
    wait_for_empty_outbox(project)

    runs = server.runs("outage")
    [(parent_id, children)] = executions(runs).items()
    assert_complete_execution(next(r for r in runs if r["info"]["run_id"] == parent_id), children)
    record_ids = [c["data"]["tags"]["carbon_budget.record_id"] for c in children]
    assert sorted(record_ids) == sorted(e["record"]["record_id"] for e in snapshot["entries"])  # each once

    again = run(["carbon-budget", "sync"], project, env)
    assert "nothing to sync" in again.stdout
    assert len(server.runs("outage")) == len(runs)
    assert_secret_nowhere(
        server, stdout + stderr + synced.stdout + synced.stderr + again.stdout, workers, project, server.home
    )


def test_two_clones_at_once_land_in_one_server_and_keep_credentials_out(
    project: Path, tool_env: dict[str, str], server: MlflowServer
) -> None:
    edit_params(project, mlflow={"experiment": "team"})
    run(["git", "commit", "-qam", "one experiment for both clones"], project, tool_env)
    clones = [project, project.parent / "second-clone"]
    run(["git", "clone", "-q", str(project), str(clones[1])], project.parent, tool_env)
    env = client_env(tool_env, server)
    logs = [project.parent / f"clone-{i}.log" for i in range(2)]
    processes = []
    with worker_command_lines() as workers:
        for clone, log in zip(clones, logs, strict=True):
            with log.open("w") as out:
                processes.append(subprocess.Popen(["dvc", "repro"], cwd=clone, env=env, stdout=out, stderr=out))
        assert processes[0].wait(timeout=400) == 0, logs[0].read_text()
        # a CI job that syncs right after its pipeline, while the worker still logs the model: nothing to add
        synced = run(["carbon-budget", "sync"], clones[0], env)
        assert "nothing to sync" in synced.stdout
        assert processes[1].wait(timeout=400) == 0, logs[1].read_text()
    outputs = [log.read_text() for log in logs]
    for output in outputs:
        assert "gate: PASSED" in output and f"compare them at {server.url}/#/experiments/" in output
    for clone in clones:
        wait_for_empty_outbox(clone)

    runs = server.runs("team")  # read back through the server's REST API
    by_parent = executions(runs)
    assert len(by_parent) == 2  # both executions, nothing lost, nothing twice
    published = set()
    for parent_id, children in by_parent.items():
        assert_complete_execution(next(r for r in runs if r["info"]["run_id"] == parent_id), children)
        published.add(frozenset(c["data"]["tags"]["carbon_budget.record_id"] for c in children))
    with sqlite3.connect(server.store) as con:
        models = con.execute(
            "select count(*) from logged_models m join experiments e using (experiment_id) where e.name = 'team'"
        )
        assert models.fetchone()[0] == 2  # each execution's model, once
    # the artifacts went to the server's artifact store, not to a directory of a client
    assert any(server.artifacts.rglob("per_class.json"))
    # each clone's records are its own, intact, and are exactly one execution's runs
    for clone in clones:
        assert not (clone / "mlartifacts").exists() and not (clone / "mlflow.db").exists()
        assert "PASSED" in run(["carbon-budget", "gate"], clone, tool_env).stdout
        records = {json.loads((clone / f"metrics/emissions/{s}.json").read_text())["record_id"] for s in STAGES}
        assert frozenset(records) in published

    assert_secret_nowhere(server, "".join(outputs) + synced.stdout + synced.stderr, workers, *clones, server.home)


def test_clients_creating_one_experiment_at_once_all_get_it(server: MlflowServer) -> None:
    """Two CI runners' first executions meet a server without their experiment: every one must get the same
    experiment, not an 'already exists' error that leaves its runs in the outbox."""
    from carbon_budget.publish import runs

    clients = [runs.open_client(server.url) for _ in range(4)]
    start = threading.Barrier(len(clients))
    ids: list[str] = []
    errors: list[Exception] = []

    def create(client: Any) -> None:
        start.wait()
        try:
            ids.append(runs.experiment_id_of(client, "first-run", server.url))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(ids) == len(clients) and len(set(ids)) == 1
