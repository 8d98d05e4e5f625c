"""Keep the tool's own background work out of the window a training forecast learns from.

The background worker that publishes to MLflow imports MLflow and opens the store (2-3 CPU-s here; it also
imported matplotlib then). Done beside a training stage's early epochs, it slowed them: under `dvc repro` the
first forecast of a 600-epoch run read +26 %, +11.7 % and +9.5 % above the stage's actual energy, against +4.5 %
with the worker off. A stage that forecasts holds a marker (a file named after its process id) while it runs; the
worker waits while a marker's process is alive before its warm-up. A marker left by a killed process is ignored (its
process is gone) and cleared.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from carbon_budget.files import write_text_atomic

POLL_S = 0.2


def _folder() -> Path:
    return Path(tempfile.gettempdir()) / f"carbon-budget-{os.getuid()}-forecasting"


def store_key(uri: str) -> str:
    """What a marker says of the tracking store its stage will publish to: a digest, since a URI may hold
    credentials and the folder is readable by anyone on the machine."""
    return hashlib.sha256(uri.encode()).hexdigest()[:16]


@contextlib.contextmanager
def forecasting(uri: str) -> Iterator[None]:
    """Hold the marker, naming the store `uri`, while the block runs: the tool's background work waits meanwhile.
    Never raises: it only keeps a measurement clean."""
    marker = _folder() / str(os.getpid())
    with contextlib.suppress(OSError):
        write_text_atomic(marker, store_key(uri))  # never seen half-written
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()


def forecasts_running(uri: str | None = None) -> bool:
    """True while a live process holds a marker (with `uri`, a marker naming that store: a training stage whose
    gate will publish there); markers of processes that are gone are cleared."""
    try:
        markers = list(_folder().iterdir())
    except OSError:
        return False
    running = False
    wanted = None if uri is None else store_key(uri)
    for marker in markers:
        if marker.name.startswith("."):
            continue  # being written (`write_text_atomic`'s temporary file)
        if marker.name.isdigit() and psutil.pid_exists(int(marker.name)):
            with contextlib.suppress(OSError):
                running = running or wanted is None or marker.read_text(encoding="utf-8") == wanted
        else:
            with contextlib.suppress(OSError):
                marker.unlink()
    return running


def wait_for_quiet(limit_s: float) -> float:
    """Wait while a forecast runs, at most `limit_s`; the seconds waited."""
    started = time.monotonic()
    while forecasts_running() and time.monotonic() - started < limit_s:
        time.sleep(POLL_S)
    return time.monotonic() - started
