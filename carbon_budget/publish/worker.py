"""A short-lived local worker that pays the gate's start-up costs while the other stages run.

The gate's own work takes milliseconds, but publishing to MLflow needs `import mlflow` and an open store
(about 3 CPU-seconds here, 4 when the store is new and no empty one is cached). The first measured
stage of an execution starts this process in the background, where the machine's other core is mostly idle
while a stage imports torch. It listens on a unix socket before importing anything, warms up, then runs the
job the gate hands it (`publish`: the runs first, then the pictures and the model once the gate has its
answer) and exits AFTER_JOB_S after it; as soon as the `dvc` process whose stages started it has ended (a pipeline
that failed before its gate); or after IDLE_S without a request while no training stage of its own store runs.

It is only an optimisation: when no worker answers, the gate runs the same job functions in its own process,
with the same result. CARBON_BUDGET_WORKER=off turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carbon_budget.measure.dvc_share import alive, dvc_identity
from carbon_budget.measure.quiet import forecasts_running
from carbon_budget.publish.redact import redact
from carbon_budget.publish.store import sqlite_path

IDLE_S = 120.0  # without a request, while no training stage of its store forecasts (a long one keeps it waiting)
POLL_S = 2.0  # how often an idle worker looks whether it is still wanted
AFTER_JOB_S = 2.0  # after a job: one execution's gate is done; stay only for a gate running beside it
REPLY_TIMEOUT_S = 600.0
DISABLE_ENV = "CARBON_BUDGET_WORKER"
URI_ENV = "CARBON_BUDGET_WORKER_URI"
OWNER_ENV = "CARBON_BUDGET_WORKER_OWNER"  # the `dvc` process whose execution the worker serves (dvc_share.dvc_identity)
SERVICE_MODULE = "carbon_budget.publish.service"  # what the worker runs: the jobs live above this module


def _code_version() -> str:
    """Changes whenever this package's code does, so a worker left by older code is never asked a job."""
    package = Path(__file__).resolve().parents[1]
    stamps = sorted(
        (str(p.relative_to(package)), p.stat().st_mtime_ns, p.stat().st_size) for p in package.rglob("*.py")
    )
    return f"{sys.executable}|{stamps}"


SOCKET_PATH_MAX = 104  # bytes a unix socket's path may hold: 108 on Linux, 104 on macOS


def socket_path(uri: str) -> Path:
    """One worker per user, tracking store and code version, in the temp folder; unix socket paths must stay short,
    hence the digest, and /tmp when the temp folder's own path is too long (a worker that cannot bind never runs)."""
    digest = hashlib.sha256(f"{uri}|{_code_version()}".encode()).hexdigest()[:16]
    name = f"carbon-budget-{os.getuid()}-{digest}.sock"
    path = Path(tempfile.gettempdir()) / name
    return path if len(os.fsencode(path)) < SOCKET_PATH_MAX else Path("/tmp") / name


def enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "on").lower() not in ("off", "0", "false")


def _connect(path: Path, timeout: float) -> socket.socket | None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(str(path))
    except OSError:
        client.close()
        return None
    return client


def ensure_running(uri: str) -> None:
    """Start a worker for `uri` unless one already listens. Never raises: it only saves time."""
    if not enabled():
        return
    path = socket_path(uri)
    alive = _connect(path, timeout=0.2)
    if alive is not None:
        alive.close()
        return
    home = Path(__file__).resolve().parents[2]  # run this very copy of the package, not another install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(home), os.environ.get("PYTHONPATH")]))}
    env[URI_ENV] = uri
    env.pop(OWNER_ENV, None)
    owner = dvc_identity()
    if owner is not None:
        env[OWNER_ENV] = owner
    # the URI travels in the environment (URI_ENV), the user's own, never on the command line: anyone on the machine
    # can read that (`ps`), and no masking rule is sure to catch every password form a driver takes raw. The command
    # line names only a local store's file, for people (and tests) telling workers apart
    store = sqlite_path(uri)
    label = [str(store).partition("?")[0]] if store is not None else []
    argv = [sys.executable, "-m", SERVICE_MODULE, *label]
    _spawn_detached(argv, home, env, path.with_suffix(".log"))


def _spawn_detached(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
    """Start `argv` as a grandchild that the init process adopts, not as our child.

    A child would sit in this stage's process tree, and per-process energy attribution (ours and
    codecarbon's) counts the whole tree: the stage would be charged for the worker's warm-up.
    """
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                os.chdir(cwd)
                null = os.open(os.devnull, os.O_RDONLY)
                out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # the user's own, like its env
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(out, 2)
                os.execve(argv[0], argv, env)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


class Pending:
    """A job handed to the worker; `answer()` waits for its reply."""

    def __init__(self, client: socket.socket) -> None:
        self._client = client

    def answer(self) -> dict[str, Any] | None:
        """{"ok": true, "result": ...}, {"ok": false, "error": "..."}, or None when the worker died mid-job (every
        job is safe to run again)."""
        with self._client:
            try:
                reply = self._client.makefile("rb").readline()
            except OSError:
                return None
        if not reply:
            return None
        answer: dict[str, Any] = json.loads(reply)
        return answer


def submit(uri: str, job: str, /, **arguments: Any) -> Pending | None:
    """Hand `job` to the worker for `uri` and return at once; None when no worker listens."""
    if not enabled():
        return None
    client = _connect(socket_path(uri), timeout=1.0)
    if client is None:
        return None
    try:
        client.settimeout(REPLY_TIMEOUT_S)
        client.sendall(json.dumps({"job": job, "arguments": arguments}).encode() + b"\n")
    except OSError:
        client.close()
        return None
    return Pending(client)


def call(uri: str, job: str, /, **arguments: Any) -> dict[str, Any] | None:
    """Run `job` in the worker for `uri` and wait; None when no worker answers (the caller runs it itself)."""
    pending = submit(uri, job, **arguments)
    return pending.answer() if pending is not None else None


@dataclass(frozen=True)
class Deferred:
    """A job's answer, plus work to do once the caller has it (the caller need not wait for that part)."""

    result: Any
    then: Callable[[], None]


def _store_identity(uri: str) -> tuple[int, int] | None:
    """(device, inode) of a sqlite store: an open connection to a deleted file would write into the void."""
    path = sqlite_path(uri)
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0)
    return (info.st_dev, info.st_ino)


def _log(message: str) -> None:
    """One line per event in the worker's log, with the CPU-seconds it has used so far: its energy is not part
    of any stage's record, so the benchmark reads it from here."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = usage.ru_utime + usage.ru_stime
    print(f"{time.strftime('%H:%M:%S')} {message} [cpu {cpu_s:.2f} s]", file=sys.stderr, flush=True)


def _answer(connection: socket.socket, jobs: dict[str, Any], uri: str) -> bool:
    """Run one request; True when it was a job (not a liveness probe). A failure's message is redacted with the
    store's `uri`: MLflow's and the drivers' messages repeat it, and the reply is printed, the log kept."""
    from carbon_budget.errors import CarbonBudgetError

    connection.settimeout(30)
    started = time.monotonic()
    request: dict[str, Any] = {}
    line = connection.makefile("rb").readline()
    if not line:
        return False  # a liveness probe from ensure_running
    then: Callable[[], None] | None = None
    try:
        request = json.loads(line)
        result = jobs[request["job"]](**request["arguments"])
        if isinstance(result, Deferred):
            result, then = result.result, result.then
        answer: dict[str, Any] = {"ok": True, "result": result}
    except CarbonBudgetError as exc:
        answer = {"ok": False, "error": redact(str(exc), uri)}
    except Exception as exc:  # a job's unexpected failure must not kill the worker: report it and carry on
        answer = {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}", uri)}
    _log(f"job {request.get('job')} {'ok' if answer['ok'] else 'failed'} in {time.monotonic() - started:.2f} s")
    with contextlib.suppress(OSError):
        connection.sendall(json.dumps(answer).encode() + b"\n")
    if then is not None:
        try:
            then()
            _log(f"follow-up of {request.get('job')} done in {time.monotonic() - started:.2f} s")
        except Exception as exc:  # left for `carbon-budget sync`: the snapshot stays in the outbox
            _log(redact(f"follow-up of {request.get('job')} failed: {type(exc).__name__}: {exc}", uri))
    return True


def _leave(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(uri: str, warm_up: Callable[[], dict[str, Callable[..., Any]]]) -> None:
    """Listen first, warm up second (`warm_up` imports what the jobs need and returns them by name), then run jobs
    on request until idle."""
    path = socket_path(uri)
    # stopped politely (a shutdown, `kill`, a test's teardown): leave through `finally`, so the socket goes too.
    # Both are in place before the socket exists: a caller may stop us the moment it sees the socket, and a stop
    # that came before the handler (Python's default ends at once) or before `try` (at idle priority, under load,
    # the lines between bind and `try` can wait seconds for a core) left the socket file in the temp folder for good
    signal.signal(signal.SIGTERM, _leave)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            if path.exists() and _connect(path, timeout=0.2) is None:
                path.unlink()  # left by a worker that died
            server.bind(str(path))
        except OSError:
            return  # another worker won the race for this store
        server.listen(16)
        with contextlib.suppress(OSError, AttributeError):
            # warm up on idle CPU only: never slow down (and so inflate the energy of) a running stage
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        with contextlib.suppress(OSError):
            os.nice(19)
        started = time.monotonic()
        jobs = warm_up()
        store = _store_identity(uri)
        _log(f"worker warm in {time.monotonic() - started:.2f} s")  # not the URI: it may hold credentials
        server.settimeout(POLL_S)
        owner = os.environ.get(OWNER_ENV)
        idle_since, linger_s = time.monotonic(), IDLE_S
        while True:
            try:
                connection, _ = server.accept()
            except TimeoutError:
                if owner and not alive(owner):
                    return  # the `dvc repro` that started us is over: no gate of it will come
                if forecasts_running(uri):
                    idle_since = time.monotonic()  # a training stage of our store runs: its gate will come
                elif time.monotonic() - idle_since >= linger_s:
                    return
                continue
            with connection:
                if _store_identity(uri) != store:
                    return  # the store was deleted or replaced under us: callers fall back and publish themselves
                if _answer(connection, jobs, uri):
                    server.settimeout(AFTER_JOB_S)
                    idle_since, linger_s = time.monotonic(), AFTER_JOB_S
    finally:
        bound = server.getsockname()  # empty unless our bind succeeded: another worker's socket is not ours to take
        server.close()
        if bound:
            with contextlib.suppress(OSError):
                path.unlink()
