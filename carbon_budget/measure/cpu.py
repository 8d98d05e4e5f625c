"""Process-CPU accounting: the CPU-seconds a process tree used, when the process started, and energy charged by
what was used (CPU-seconds, GB-seconds) rather than read from a sensor.

The kernel's own accounting (getrusage for finished children, psutil for live ones) is the same whoever asks: a
stage's meter (`energy.py`), the background worker and a gate counting the tool's own cost, and a distributed run's
nodes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from carbon_budget.errors import MeasurementError
from carbon_budget.measure.memory import RAM_METHOD
from carbon_budget.measure.reading import EnergyReading
from carbon_budget.records.record import EmissionRecord


def tree_cpu_seconds() -> float:
    """CPU-seconds of this process, its finished (waited-for) children and its live ones, each counted once.

    A grandchild counts while it runs, and once finished through the child that waited for it (torchrun waits
    for its training processes), when that child is itself waited for."""
    import resource

    import psutil

    own = resource.getrusage(resource.RUSAGE_SELF)
    finished = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + finished.ru_utime + finished.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue  # ended between listing and reading: counted in RUSAGE_CHILDREN once waited for
        total += times.user + times.system
    return total


def process_started_at() -> float:
    """When this process started, in epoch seconds, exact to a clock tick (10 ms) on Linux.

    The kernel keeps a process's start as clock ticks since boot (/proc/self/stat, field 22), on the clock
    CLOCK_BOOTTIME reads. The boot moment is now minus that clock, both read back to back: exact to microseconds,
    where /proc/uptime carries 10 ms and /proc/stat's `btime` a whole second. psutil adds the ticks to `btime`, so
    its start reads up to a second early and a stage seemed to begin before the previous one ended. Off Linux,
    psutil's figure is all there is."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        booted_at = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        return booted_at + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc, or no CLOCK_BOOTTIME: not Linux
        import psutil

        return float(psutil.Process().create_time())


J_PER_KWH = 3.6e6  # a kWh in joules (watt-seconds)


def charged_kwh(amount: float, watts_per_unit: float, pue: float) -> float:
    """kWh for `amount` unit-seconds (CPU-seconds, GB-seconds) at `watts_per_unit`, with the data centre's PUE: the
    one conversion behind every figure charged by what a process used rather than read from a sensor."""
    return amount * watts_per_unit * pue / J_PER_KWH


@dataclass(frozen=True)
class _CpuRate:
    """Watts per busy CPU-second (joules per CPU-second, before PUE), the method it is charged under, and where
    the figure came from."""

    watts: float
    method: str
    source: str


def _cpu_rate(likes: Sequence[EmissionRecord]) -> _CpuRate | None:
    """The rate the execution's records (`likes`, the latest last) charged a CPU-second at: the latest's TDP per
    thread where its CPU figure was an estimate against a TDP; else, where a sensor (RAPL) measured it, what the
    records' CPU figures came to per CPU-second of their own work. None where no record holds either."""
    like = likes[-1]
    tdp, threads = like.hardware.cpu_tdp_w, like.hardware.cpu_count
    if tdp and threads > 0:
        return _CpuRate(tdp / threads, "estimated:cpu_time_x_tdp", like.hardware.cpu_tdp_source)
    worked = [r for r in likes if r.extra_metrics.get("cpu_s", 0.0) > 0]
    cpu_s = math.fsum(r.extra_metrics["cpu_s"] for r in worked)
    if not cpu_s:
        return None
    watts = math.fsum(r.cpu_energy_kwh / r.pue for r in worked) * J_PER_KWH / cpu_s
    methods = ", ".join(sorted({r.methods.cpu for r in worked}))
    return _CpuRate(
        watts,
        "estimated:cpu_time_x_stage_rate",
        f"no TDP ({methods}): {watts:.4g} W per CPU-second, the CPU energy of"
        f" {', '.join(r.stage for r in worked)} over their own CPU-seconds",
    )


def charge_usage(cpu_s: float, ram_gb_s: float, duration_s: float, likes: Sequence[EmissionRecord]) -> EnergyReading:
    """Energy for work no tracker watched (the background worker's own CPU-seconds and GB-seconds), charged at
    the rates `likes`, records of the same execution on the same machine (the latest last), were charged: their
    CPU rate (`_cpu_rate`: a TDP per thread, or what a sensor measured per CPU-second), the latest's RAM watts per
    GB, PUE and intensity. A rate they do not hold is not guessed: RAM without one is 0, `none`, and CPU-seconds
    without one are a MeasurementError, never a silent zero."""
    like = likes[-1]
    rate = _cpu_rate(likes)
    if rate is None and cpu_s > 0:
        raise MeasurementError(
            f"{cpu_s:.3g} CPU-seconds cannot be charged: no record of {', '.join(r.stage for r in likes)} names a"
            " TDP or its own CPU-seconds (records from before CPU-seconds were kept: rerun `dvc repro`)"
        )
    ram_w_per_gb = like.extra_metrics.get("ram_w_per_gb")
    cpu_kwh = charged_kwh(cpu_s, rate.watts, like.pue) if rate else 0.0
    ram_kwh = charged_kwh(ram_gb_s, ram_w_per_gb, like.pue) if ram_w_per_gb else 0.0
    energy_kwh = cpu_kwh + ram_kwh
    hardware = like.hardware.model_dump()
    if rate is not None:
        hardware["cpu_tdp_source"] = rate.source
    return EnergyReading(
        duration_s=duration_s,
        energy_kwh=energy_kwh,
        cpu_energy_kwh=cpu_kwh,
        gpu_energy_kwh=0.0,
        ram_energy_kwh=ram_kwh,
        co2_kg=energy_kwh * like.carbon_intensity_g_per_kwh / 1000,
        carbon_intensity_g_per_kwh=like.carbon_intensity_g_per_kwh,
        carbon_intensity_source=like.carbon_intensity_source,
        country_iso_code=like.country_iso_code,
        pue=like.pue,
        tracking_mode="process",
        methods={
            "cpu": rate.method if rate else "none",
            "gpu": "none",
            "ram": RAM_METHOD if ram_w_per_gb else "none",
        },
        hardware=hardware,
        codecarbon_version=like.codecarbon_version,
        ram_gb_s=ram_gb_s if ram_w_per_gb else None,
        ram_w_per_gb=ram_w_per_gb,
        cpu_s=cpu_s,
    )
