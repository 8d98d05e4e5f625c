"""The background worker's life: it answers jobs, and does not stay in memory once nothing will ask it any."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from carbon_budget.measure.dvc_share import alive
from carbon_budget.publish import worker
from tests.conftest import ROOT

pytestmark = pytest.mark.integration  # real processes, seconds each

# a worker whose only job echoes its arguments; what it serves is beside the point here
SERVE = textwrap.dedent(
    """
    import sys
    from carbon_budget.publish import worker
    worker.serve(sys.argv[1], lambda: {"echo": lambda **arguments: arguments})
    """
)


def start_worker(uri: str, owner: str | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != worker.OWNER_ENV}
    if owner is not None:
        env[worker.OWNER_ENV] = owner
    process = subprocess.Popen([sys.executable, "-c", SERVE, uri], cwd=ROOT, env=env)
    deadline = time.time() + 30
    while not worker.socket_path(uri).exists() and time.time() < deadline:
        time.sleep(0.05)
    return process


def identity_of(process: subprocess.Popen[bytes]) -> str:
    import psutil

    return f"{process.pid}:{psutil.Process(process.pid).create_time()}"


def test_a_worker_answers_then_leaves_soon_after_its_job() -> None:
    uri = f"sqlite:////nonexistent/{uuid.uuid4().hex}.db"
    process = start_worker(uri, owner=None)
    try:
        assert worker.call(uri, "echo", figure=1.5) == {"ok": True, "result": {"figure": 1.5}}
        answered = time.monotonic()
        process.wait(timeout=worker.AFTER_JOB_S + worker.POLL_S + 10)
        assert time.monotonic() - answered < worker.AFTER_JOB_S + worker.POLL_S + 5
    finally:
        process.kill()
    assert not worker.socket_path(uri).exists()


def test_a_worker_leaves_once_the_dvc_process_it_served_has_ended() -> None:
    uri = f"sqlite:////nonexistent/{uuid.uuid4().hex}.db"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    process = start_worker(uri, owner=identity_of(owner))
    try:
        time.sleep(worker.POLL_S + 1)
        assert process.poll() is None  # its `dvc repro` still runs: a gate may come
        owner.kill()
        owner.wait()
        ended = time.monotonic()
        process.wait(timeout=worker.POLL_S + 10)
        assert time.monotonic() - ended < worker.IDLE_S / 4  # not the idle limit: the owner's end
    finally:
        owner.kill()
        process.kill()


def test_the_owner_is_the_dvc_process_above_and_a_reused_pid_is_not_it(tmp_path: Path) -> None:
    # a program named `dvc` that runs a child, as `dvc repro` runs a stage; the child names its dvc ancestor
    fake_dvc = tmp_path / "dvc"
    child = "from carbon_budget.measure.dvc_share import dvc_identity; print(dvc_identity())"
    runs_child = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {child!r}])\n"
    fake_dvc.write_text(f"#!{sys.executable}\n{runs_child}")
    fake_dvc.chmod(0o755)
    result = subprocess.run([str(fake_dvc)], cwd=ROOT, capture_output=True, text=True, check=True)
    pid, started = result.stdout.strip().split(":")
    assert int(pid) > 0 and float(started) > 0
    assert not alive(result.stdout.strip())  # it has ended
    assert not alive(f"{os.getpid()}:1.0")  # a live pid, started at another time: another process
    assert alive(f"{os.getpid()}:{__import__('psutil').Process().create_time()}")


IDLE_SERVE = textwrap.dedent(
    """
    import sys
    from carbon_budget.publish import worker
    worker.IDLE_S = 3.0  # the idle limit, shortened for the test
    worker.serve(sys.argv[1], lambda: {})
    """
)
TRAIN = textwrap.dedent(
    """
    import sys, time
    from carbon_budget.measure.quiet import forecasting
    with forecasting(sys.argv[1]):
        print("training", flush=True)
        time.sleep(120)
    """
)


def test_an_idle_worker_waits_for_a_training_stage_of_its_own_store_only() -> None:
    # a private temp folder for markers and sockets, out of every other test's way, and short: a unix socket's path
    # must stay under 108 bytes, and a worker that cannot bind leaves at once
    folder = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != worker.OWNER_ENV} | {"TMPDIR": str(folder)}
    uri = f"sqlite:////nonexistent/{uuid.uuid4().hex}.db"

    def train(store: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", TRAIN, store], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None and process.stdout.readline() == "training\n"
        return process

    def serve() -> tuple[subprocess.Popen[bytes], float]:
        process = subprocess.Popen([sys.executable, "-c", IDLE_SERVE, uri], cwd=ROOT, env=env)
        deadline = time.time() + 30
        while not list(folder.glob("carbon-budget-*.sock")) and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert list(folder.glob("carbon-budget-*.sock")), "the worker never listened"
        return process, time.monotonic()

    other = train("sqlite:////another/store.db")
    try:
        process, started = serve()
        process.wait(timeout=30)  # another store's training is not a gate this worker will get
        assert time.monotonic() - started < 3.0 + worker.POLL_S + 10
    finally:
        other.kill()  # its marker gone, even a worker that waited for it leaves within the idle limit
    own = train(uri)
    process, started = serve()
    try:
        time.sleep(3.0 + 2 * worker.POLL_S + 1)
        assert process.poll() is None  # its own store's training runs: the gate will come
        own.kill()
        own.wait()
        process.wait(timeout=3.0 + worker.POLL_S + 10)
    finally:
        own.kill()
        process.kill()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_long_temp_folder_still_gives_a_socket_path_a_worker_can_bind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_folder = tmp_path / ("x" * 90)
    long_folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_folder))
    path = worker.socket_path("sqlite:////some/store.db")
    assert len(os.fsencode(path)) < worker.SOCKET_PATH_MAX and path.parent == Path("/tmp")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))  # raises "AF_UNIX path too long" for the path in the long folder
    path.unlink()
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    assert worker.socket_path("sqlite:////some/store.db") == path


def test_the_worker_warms_up_only_once_no_stage_forecasts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's import and the store wait while a training stage forecasts: done beside its early epochs they read
    the first forecast high. The store is not even opened until the stage's marker is gone."""
    import threading

    from carbon_budget.measure import quiet
    from carbon_budget.measure.stage import StageRun
    from carbon_budget.publish import service

    monkeypatch.setattr(quiet.tempfile, "gettempdir", lambda: str(tmp_path))
    store = tmp_path / "mlflow.db"
    served: list[object] = []
    with StageRun("train", record_file=tmp_path / "train.json", forecasts=True):
        warming = threading.Thread(target=lambda: served.append(service.jobs(f"sqlite:///{store}")), daemon=True)
        warming.start()
        time.sleep(2.0)
        assert warming.is_alive() and not store.exists()
    warming.join(timeout=120)
    assert served and "publish" in served[0] and store.exists()  # type: ignore[operator]


EXIT_WAIT_S = 120.0  # a worker runs at idle priority: under load it may wait long for a core to leave on


def test_a_worker_stopped_politely_takes_its_socket_away() -> None:
    """SIGTERM (a shutdown, `kill`, a test's teardown) goes through the worker's clean-up: no socket file is left
    in the temp folder (hundreds had piled up there)."""
    import signal

    uri = f"sqlite:////nonexistent/{uuid.uuid4().hex}.db"
    process = start_worker(uri, owner=None)
    try:
        assert worker.socket_path(uri).exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=EXIT_WAIT_S) == 0
    finally:
        process.kill()
    assert not worker.socket_path(uri).exists()


# SIGTERM delivered at a chosen moment of the worker's start: just after its socket exists, or while it settles in
# (lowers its priority). A stop sent as soon as the socket appears can land in either under load.
STOPPED_AT = {
    "bind": textwrap.dedent(
        """
        import os, signal, socket, _socket

        def bind(self, address):
            _socket.socket.bind(self, address)
            os.kill(os.getpid(), signal.SIGTERM)

        socket.socket.bind = bind
        """
    ),
    "nice": "import os, signal\nos.nice = lambda increment: os.kill(os.getpid(), signal.SIGTERM)\n",
}


@pytest.mark.parametrize("moment", sorted(STOPPED_AT))
def test_a_stop_at_any_moment_after_the_socket_exists_takes_it_away(moment: str) -> None:
    """The race behind a flaky "socket still there": the worker bound its socket (so a caller saw it) before it set
    its SIGTERM handler and before its clean-up was armed; a stop in between left the socket for good."""
    uri = f"sqlite:////nonexistent/{uuid.uuid4().hex}.db"
    process = subprocess.Popen([sys.executable, "-c", STOPPED_AT[moment] + SERVE, uri], cwd=ROOT)
    try:
        assert process.wait(timeout=EXIT_WAIT_S) == 0
    finally:
        process.kill()
    assert not worker.socket_path(uri).exists()


def test_a_worker_gets_its_store_through_the_environment_never_its_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Anyone on the machine reads a command line (`ps`): a password SQLAlchemy takes raw (`?`, `#`) got past the
    masking there in full. The worker's command line names no store at all; its environment, the user's own, does."""
    import psutil

    from carbon_budget.measure.quiet import forecasting

    password = "Jd4?hN8#tB"
    uri = f"postgresql://alice:{password}@127.0.0.1:9/{uuid.uuid4().hex}"
    folder = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))  # short, for the socket; private, for the marker
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.delenv(worker.DISABLE_ENV, raising=False)
    found: list[psutil.Process] = []
    try:
        # a forecast holds the worker's warm-up, so it is still there to be looked at, listening, MLflow not opened
        with forecasting("sqlite:////another/store.db"):
            worker.ensure_running(uri)
            deadline = time.monotonic() + 60
            while not found and time.monotonic() < deadline:
                found = [
                    p
                    for p in psutil.process_iter(["cmdline", "environ"])
                    if (p.info["environ"] or {}).get(worker.URI_ENV) == uri
                ]
                time.sleep(0.1)
            assert len(found) == 1, "no worker started"
            command_line = " ".join(found[0].info["cmdline"] or [])
            assert worker.SERVICE_MODULE in command_line
            assert password not in command_line and "alice" not in command_line and "127.0.0.1" not in command_line
    finally:
        for process in found:
            process.terminate()
            process.wait(timeout=EXIT_WAIT_S)
        shutil.rmtree(folder, ignore_errors=True)
