"""A local sqlite tracking store's first opening: serialised, and seeded from an empty store MLflow made before.

MLflow creates a sqlite store by running its whole chain of schema migrations: 2.0 CPU-seconds here against 1.0 to
open one, paid by the tool on every fresh clone's first `dvc repro` and by every test's project. The result is the
same file every time for one MLflow version (its tables, the `Default` experiment, the default workspace). So the
first store MLflow creates on a machine is copied, still empty, to the plugin's cache (`files.cache_dir`), keyed by
MLflow's version; a later new store starts as a copy of it, with the `Default` experiment's creation time and
artifact location set as MLflow would have set them. MLflow then opens it as any store it made itself, checking that
its schema is current. A copy it refuses is removed, and MLflow creates the store itself.

Two processes creating one store at the same moment corrupt it (alembic's migration race), so creation happens under
a lock file beside the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from carbon_budget.files import cache_dir, write_bytes_atomic

T = TypeVar("T")
SQLITE = "sqlite:///"


def sqlite_path(uri: str) -> Path | None:
    """The file of a local sqlite store; None for any other kind of store."""
    return Path(uri.removeprefix(SQLITE)) if uri.startswith(SQLITE) else None


def template_path(mlflow_version: str) -> Path:
    """Where the empty store for this MLflow version is kept on this machine."""
    return cache_dir() / f"mlflow-{mlflow_version}-empty.db"


@contextmanager
def locked(uri: str) -> Iterator[None]:
    """Hold the store's lock file (none for a store that is not a local sqlite file): its creation, and the
    experiment's, happen once."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _as_created_here(path: Path) -> None:
    """What differs between two stores MLflow creates: the `Default` experiment's creation time, and its artifact
    location (`./mlruns/0` resolved against the creating process's working directory)."""
    now_ms = int(time.time() * 1000)
    location = str(Path.cwd() / "mlruns" / "0")
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "update experiments set artifact_location = ?, creation_time = ?, last_update_time = ?"
            " where experiment_id = 0",
            (location, now_ms, now_ms),
        )


def opened(uri: str, mlflow_version: str, open_store: Callable[[], T]) -> T:
    """`open_store()` (which makes MLflow open, and if need be create, the store at `uri`), with a new sqlite
    store seeded from the machine's empty one when there is one, and saved as that one when there is not."""
    path = sqlite_path(uri)
    if path is None:
        return open_store()
    with locked(uri):
        if path.exists():
            return open_store()
        template = template_path(mlflow_version)
        if template.is_file():
            with contextlib.suppress(OSError, sqlite3.Error):
                write_bytes_atomic(path, template.read_bytes())
                _as_created_here(path)
                try:
                    return open_store()
                except Exception:  # MLflow raises many types: refused, so MLflow creates the store itself below
                    path.unlink()
                    template.unlink()
            with contextlib.suppress(OSError):
                path.unlink()
        store = open_store()
        with contextlib.suppress(OSError):
            write_bytes_atomic(template, path.read_bytes())  # still empty: nothing has been logged to it yet
        return store
