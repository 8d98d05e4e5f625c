"""The codecarbon adapter: the only module that imports codecarbon.

It turns a tracker's run into an `EnergyReading` that says, per component, whether the figure was measured
(RAPL, NVML) or estimated (CPU load x TDP, RAM rule of thumb). Two costs of codecarbon are paid once
instead of in every stage process:

- the hardware probe (py-cpuinfo in a subprocess, ~1.4 s): codecarbon already caches its result per process
  as a "hardware plan"; we persist that plan per machine boot, so later processes reuse exactly what the
  first one detected (the same CPU mode, TDP, GPU ids);
- the country lookup (all of codecarbon's reference data through pandas, ~0.5 s): the intensity comes from
  `pipeline.grid`, which reads the same figures, and is handed to the tracker.

- CPU attribution in process mode: codecarbon 3.3.2's process mode was seen here charging a process that
  keeps one of two cores busy sometimes its share (4 W) and sometimes the whole TDP (8 W), so two runs side
  by side could each be charged the whole machine. When the CPU figure is an estimate from load x TDP, we
  charge the stage's own process tree its CPU-seconds x (TDP / cores) instead, from the kernel's own
  accounting (getrusage for finished children, psutil for live ones), and label it
  `estimated:cpu_time_x_tdp`. RAM and GPU figures, and every measured (RAPL) figure, stay codecarbon's.

PUE is applied by codecarbon to every component. codecarbon swallows its own exceptions and then returns
no data; that is raised here as MeasurementError, never reported as zero.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carbon_budget.config import CarbonParams
from carbon_budget.errors import MeasurementError
from carbon_budget.files import write_json
from carbon_budget.measure import grid

_CPU_MODES = {
    "intel_rapl": "measured:rapl",
    "windows_emi": "measured:emi",
    "intel_power_gadget": "measured:power_gadget",
    "apple_powermetrics": "measured:powermetrics",
    "cpu_load": "estimated:cpu_load_x_tdp",
    "constant": "estimated:tdp_constant",
}


@dataclass(frozen=True)
class Intensity:
    g_per_kwh: float
    source: str
    country_iso_code: str | None


@dataclass(frozen=True)
class EnergyReading:
    """What codecarbon measured for one span of work, with units in every name."""

    duration_s: float
    energy_kwh: float
    cpu_energy_kwh: float
    gpu_energy_kwh: float
    ram_energy_kwh: float
    co2_kg: float
    carbon_intensity_g_per_kwh: float
    intensity_source: str
    country_iso_code: str | None
    pue: float
    tracking_mode: str
    methods: dict[str, str]
    hardware: dict[str, Any]
    codecarbon_version: str


def resolve_intensity(carbon: CarbonParams) -> Intensity:
    """The grid intensity to charge: a team's own figure when params give one, else the country's average."""
    if carbon.intensity_g_per_kwh is not None:
        return Intensity(carbon.intensity_g_per_kwh, "params: carbon.intensity_g_per_kwh", carbon.country_iso_code)
    code = carbon.country_iso_code
    year = grid.country_data_year(code)
    return Intensity(grid.country_intensity_g_per_kwh(code), f"codecarbon energy mix {code} ({year})", code)


def _cache_dir() -> Path:
    base = os.environ.get("CARBON_BUDGET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "carbon-budget"
    )
    return Path(base)


def _machine_key() -> str:
    """Changes when the machine reboots, so a plan never outlives the hardware it described."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "no-boot-id"
    return f"{socket.gethostname()}-{boot_id}"


def _plan_file(version: str) -> Path:
    return _cache_dir() / f"hardware-plan-codecarbon{version}-{_machine_key()}.json"


def _load_plans(version: str) -> None:
    """Seed codecarbon's per-process hardware cache with the plans an earlier process detected."""
    from codecarbon.core import hardware_cache

    try:
        entries = json.loads(_plan_file(version).read_text())
        for entry in entries:
            key_type: Any = hardware_cache._HardwareCacheKey  # its fields are codecarbon's to type
            key = key_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry["key"].items()})
            hardware_cache._plans.setdefault(key, hardware_cache._HardwarePlan(**entry["plan"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return  # no usable plan: codecarbon probes the hardware itself, as it always would


def _save_plans(version: str) -> None:
    from codecarbon.core import hardware_cache

    try:
        entries = [
            {"key": dataclasses.asdict(key), "plan": dataclasses.asdict(plan)}
            for key, plan in hardware_cache._plans.items()
        ]
        write_json(_plan_file(version), entries)
    except (OSError, TypeError, ValueError, AttributeError):
        return  # the cache is an optimisation; failing to write it changes no figure


def _methods(tracker: Any) -> dict[str, str]:
    """Name how codecarbon got each component, from the hardware objects it actually used."""
    methods = {"cpu": "none", "gpu": "none", "ram": "none"}
    for hardware in getattr(tracker, "_hardware", []):
        kind = type(hardware).__name__
        if kind == "CPU":
            methods["cpu"] = _CPU_MODES.get(hardware._mode, "estimated:" + str(hardware._mode))
        elif kind == "AppleSiliconChip":
            methods["cpu"] = "measured:powermetrics"
        elif kind == "GPU":
            methods["gpu"] = "measured:nvml"
        elif kind == "RAM":
            forced = getattr(hardware, "_force_ram_power", None)
            methods["ram"] = "estimated:ram_forced" if forced else "estimated:ram_rule"
    return methods


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


class EnergyMeter:
    """Start/stop wrapper around one codecarbon OfflineEmissionsTracker (no network, no files)."""

    def __init__(self, carbon: CarbonParams, label: str) -> None:
        self._carbon = carbon
        self._label = label
        self._intensity = resolve_intensity(carbon)
        self._tracker: Any = None
        self._version = ""
        self._cpu_seconds_at_start = 0.0

    def start(self) -> None:
        # codecarbon logs at INFO during init, before its log_level argument applies; only this variable works.
        os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
        import codecarbon
        from codecarbon import OfflineEmissionsTracker

        self._version = codecarbon.__version__
        _load_plans(self._version)
        # Every argument is explicit: codecarbon otherwise lets ~/.codecarbon.config or CODECARBON_* change it.
        self._tracker = OfflineEmissionsTracker(
            project_name=self._label,
            measure_power_secs=self._carbon.measure_power_secs,
            tracking_mode=self._carbon.tracking_mode,
            pue=self._carbon.pue,
            force_carbon_intensity_g_co2e_kwh=self._intensity.g_per_kwh,
            output_methods=[],
            allow_multiple_runs=True,
            log_level=os.environ["CODECARBON_LOG_LEVEL"],
        )
        self._cpu_seconds_at_start = tree_cpu_seconds()
        self._tracker.start()
        _save_plans(self._version)

    @property
    def intensity_g_per_kwh(self) -> float:
        return self._intensity.g_per_kwh

    def _own_cpu_kwh(self, tracker: Any) -> float | None:
        """The stage's CPU energy from its own CPU-seconds, when codecarbon's CPU figure is a load estimate in
        process mode; None where codecarbon's figure stands (measured sensors, machine mode)."""
        cpu = next((h for h in getattr(tracker, "_hardware", []) if type(h).__name__ == "CPU"), None)
        if self._carbon.tracking_mode != "process" or cpu is None or cpu._mode != "cpu_load":
            return None
        watts_per_core = float(cpu._tdp) / max(int(cpu._cpu_count), 1)
        cpu_seconds = tree_cpu_seconds() - self._cpu_seconds_at_start
        return cpu_seconds * watts_per_core * self._carbon.pue / 3.6e6

    def sample_kwh(self) -> float:
        """Energy so far, measured now (for forecasts while the stage runs)."""
        tracker = self._tracker
        if tracker is None or tracker.flush() is None:
            raise MeasurementError(f"{self._label}: codecarbon returned no measurement while running")
        try:
            ram = float(tracker._total_ram_energy.kWh)
            gpu = float(tracker._total_gpu_energy.kWh)
            cpu = self._own_cpu_kwh(tracker)
            return ram + gpu + (cpu if cpu is not None else float(tracker._total_cpu_energy.kWh))
        except AttributeError:
            raise MeasurementError(f"{self._label}: this codecarbon version hides its running totals") from None

    def stop(self) -> EnergyReading:
        if self._tracker is None:
            raise MeasurementError(f"{self._label}: the energy tracker was never started")
        tracker, self._tracker = self._tracker, None
        own_cpu_kwh = self._own_cpu_kwh(tracker)
        tracker.stop()
        data = getattr(tracker, "final_emissions_data", None)
        if data is None:
            raise MeasurementError(
                f"{self._label}: codecarbon returned no measurement (set CODECARBON_LOG_LEVEL=warning to see why)"
            )
        methods = _methods(tracker)
        cpu_kwh = float(data.cpu_energy)
        if own_cpu_kwh is not None:
            cpu_kwh, methods["cpu"] = own_cpu_kwh, "estimated:cpu_time_x_tdp"
        energy_kwh = cpu_kwh + float(data.gpu_energy) + float(data.ram_energy)
        return EnergyReading(
            duration_s=float(data.duration),
            energy_kwh=energy_kwh,
            cpu_energy_kwh=cpu_kwh,
            gpu_energy_kwh=float(data.gpu_energy),
            ram_energy_kwh=float(data.ram_energy),
            co2_kg=energy_kwh * self._intensity.g_per_kwh / 1000,
            carbon_intensity_g_per_kwh=self._intensity.g_per_kwh,
            intensity_source=self._intensity.source,
            country_iso_code=self._intensity.country_iso_code,
            pue=self._carbon.pue,
            tracking_mode=self._carbon.tracking_mode,
            methods=methods,
            hardware={
                "cpu_model": str(data.cpu_model or "unknown"),
                "cpu_count": int(data.cpu_count or 0),
                "gpu_model": str(data.gpu_model or ""),
                "gpu_count": int(data.gpu_count or 0),
                "ram_total_gb": float(data.ram_total_size or 0.0),
            },
            codecarbon_version=self._version,
        )
