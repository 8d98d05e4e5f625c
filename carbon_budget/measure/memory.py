"""RAM energy from the memory a stage really holds: its process tree's resident memory integrated over time.

codecarbon charges any process a fixed rule of thumb (about 10 W here, two memory sticks at 5 W), whether it
holds 50 MB or 2 GB, and charges it again for every process running beside it: 70 % of a stage's energy was that
constant. Here a stage pays for GB-seconds it held: resident memory (RSS) of the process and its children,
sampled twice a second and integrated (trapezoids), times a watts-per-GB figure (`carbon.ram_w_per_gb`, by default
the Cloud Carbon Footprint methodology's memory coefficient, 0.392 W per GB, i.e. 0.000392 kWh per GB-hour).
RSS counts pages shared between processes once per process: an upper bound, labelled an estimate.
"""

from __future__ import annotations

import threading
import time

import psutil

from carbon_budget.config import DEFAULT_RAM_W_PER_GB

SAMPLE_EVERY_S = 0.5
RAM_METHOD = "estimated:rss_x_w_per_gb"


def ram_source(ram_w_per_gb: float) -> str:
    """Where a record's W/GB came from: the published default, or the project's own figure."""
    if ram_w_per_gb == DEFAULT_RAM_W_PER_GB:
        return (
            f"carbon.ram_w_per_gb (default {DEFAULT_RAM_W_PER_GB} W/GB:"
            " Cloud Carbon Footprint methodology, memory coefficient)"
        )
    return f"carbon.ram_w_per_gb = {ram_w_per_gb:g} W/GB, the project's own figure in params.yaml"


def tree_rss_gb(include_self: bool = True) -> float:
    """Resident memory of this process (unless it only wraps a command) and every live descendant, in GB (1e9
    bytes)."""
    me = psutil.Process()
    total = me.memory_info().rss if include_self else 0
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue  # ended between listing and reading
    return total / 1e9


class MemoryMeter:
    """Integrates the process tree's RSS from `start()` on; `gb_seconds()` reads the integral up to now.

    `include_self=False` for `carbon-budget track`: the stage is the command it runs, and the wrapper's own
    interpreter (codecarbon and its imports, about 0.1 GB) is the tool's cost, not the command's."""

    def __init__(self, sample_every_s: float = SAMPLE_EVERY_S, include_self: bool = True) -> None:
        self._every = sample_every_s
        self._include_self = include_self
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._integral_gb_s = 0.0
        self._last: tuple[float, float] | None = None  # (monotonic time, GB) of the latest sample
        self._thread: threading.Thread | None = None

    def _sample(self) -> float:
        now, gb = time.monotonic(), tree_rss_gb(self._include_self)
        with self._lock:
            if self._last is not None:
                then, before = self._last
                self._integral_gb_s += (now - then) * (before + gb) / 2
            self._last = (now, gb)
            return self._integral_gb_s

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def start(self, ramp_s: float = 0.0) -> None:
        """`ramp_s`: seconds the stage already ran before this meter started; its memory then is charged as a ramp
        from nothing to what is held now (a process's memory grows as it imports), a trapezoid like every other."""
        self._integral_gb_s = ramp_s * tree_rss_gb(self._include_self) / 2
        self._sample()
        self._thread = threading.Thread(target=self._run, name="carbon-budget-memory", daemon=True)
        self._thread.start()

    def gb_seconds(self) -> float:
        """GB-seconds held so far, with a fresh sample for the span since the last one."""
        return self._sample()

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self._sample()
