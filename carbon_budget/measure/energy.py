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
  accounting (`cpu.tree_cpu_seconds`), and label it
  `estimated:cpu_time_x_tdp`. RAM and GPU figures, and every measured (RAPL) figure, stay codecarbon's. The
  CPU-seconds are in every reading, however the CPU figure was got: work no meter watched (the tool's own) is
  charged by them at the rate the stages' CPU figures came to (`cpu.charge_usage`).

PUE is applied by codecarbon to every component. codecarbon swallows its own exceptions and then returns
no data; that is raised here as MeasurementError, never reported as zero.

The plan cache, the CPU attribution, the method labels and the running totals read codecarbon's private
attributes. Every codecarbon in the supported range (3.0 to 3.x; tests/unit/measure/test_codecarbon_range.py runs
the lowest and the highest) is read defensively: what is found is checked first, and anything missing or unexpected
falls back to codecarbon's public behaviour (it probes the hardware itself, its own CPU figure stands, a method it
does not show is labelled `estimated:unknown`, a running total it hides is a MeasurementError), never to a
figure computed from something we misread.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import socket
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, TypeGuard

from carbon_budget import grid
from carbon_budget.config import CarbonParams
from carbon_budget.errors import MeasurementError
from carbon_budget.files import cache_dir, write_json
from carbon_budget.measure.cpu import charged_kwh, tree_cpu_seconds
from carbon_budget.measure.memory import RAM_METHOD, MemoryMeter
from carbon_budget.measure.reading import EnergyReading, Intensity

_CPU_MODES = {
    "intel_rapl": "measured:rapl",
    "windows_emi": "measured:emi",
    "intel_power_gadget": "measured:power_gadget",
    "apple_powermetrics": "measured:powermetrics",
    "cpu_load": "estimated:cpu_load_x_tdp",
    "constant": "estimated:tdp_constant",
}
# A component whose method codecarbon does not show: records allow only measured:/estimated:/none, and a method
# nobody can name is never claimed as measured.
_UNKNOWN = "estimated:unknown"
# The TDP codecarbon estimates CPU load against, for a whole machine: a value outside this range is not a TDP
# in watts, and attributing CPU-seconds against it would give a wrong figure.
_TDP_RANGE_W = (1.0, 5000.0)


def resolve_intensity(carbon: CarbonParams) -> Intensity:
    """The grid intensity to charge: a team's own figure when params give one, else the country's average."""
    if carbon.intensity_g_per_kwh is not None:
        return Intensity(carbon.intensity_g_per_kwh, "params: carbon.intensity_g_per_kwh", carbon.country_iso_code)
    code = carbon.country_iso_code
    year = grid.country_data_year(code)
    return Intensity(grid.country_intensity_g_per_kwh(code), f"codecarbon energy mix {code} ({year})", code)


def _machine_key() -> str:
    """Changes when the machine reboots, so a plan never outlives the hardware it described."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "no-boot-id"
    return f"{socket.gethostname()}-{boot_id}"


def _plan_file(version: str) -> Path:
    return cache_dir() / f"hardware-plan-codecarbon{version}-{_machine_key()}.json"


def _plan_cache() -> ModuleType | None:
    """codecarbon's per-process hardware-plan cache, when it has the shape we persist; None where it does not
    (3.0.0 has no cache at all), and codecarbon then probes the hardware itself, as it always would."""
    try:
        from codecarbon.core import hardware_cache
    except ImportError:
        return None
    if not isinstance(getattr(hardware_cache, "_plans", None), dict):
        return None
    for name in ("_HardwareCacheKey", "_HardwarePlan"):
        found = getattr(hardware_cache, name, None)
        if not (isinstance(found, type) and dataclasses.is_dataclass(found)):
            return None
    return hardware_cache


def _field_names(dataclass_type: Any) -> set[str]:
    return {field.name for field in dataclasses.fields(dataclass_type)}


def _sound_plan(plan: Any) -> bool:
    """A plan codecarbon can rebuild its hardware from: an empty list of hardware would measure nothing, and a
    run that measured nothing would read as zero energy."""
    specs = plan.get("hardware_specs") if isinstance(plan, dict) else None
    return (
        isinstance(specs, list)
        and bool(specs)
        and all(isinstance(spec, dict) and isinstance(spec.get("kind"), str) for spec in specs)
        and isinstance(plan.get("conf"), dict)
    )


def _load_plans(version: str) -> None:
    """Seed codecarbon's per-process hardware cache with the plans an earlier process detected: all of them
    when every entry has exactly the fields this codecarbon's plans have, none otherwise."""
    cache = _plan_cache()
    if cache is None:
        return
    key_fields, plan_fields = _field_names(cache._HardwareCacheKey), _field_names(cache._HardwarePlan)
    plans = {}
    try:
        for entry in json.loads(_plan_file(version).read_text()):
            key, plan = entry["key"], entry["plan"]
            if set(key) != key_fields or set(plan) != plan_fields or not _sound_plan(plan):
                return
            key_type: Any = cache._HardwareCacheKey  # its fields are codecarbon's to type
            plans[key_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in key.items()})] = (
                cache._HardwarePlan(**plan)
            )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return  # no usable plan: codecarbon probes the hardware itself, as it always would
    for key_value, plan_value in plans.items():
        cache._plans.setdefault(key_value, plan_value)


def _save_plans(version: str) -> None:
    cache = _plan_cache()
    if cache is None:
        return
    try:
        entries = [
            {"key": dataclasses.asdict(key), "plan": dataclasses.asdict(plan)} for key, plan in cache._plans.items()
        ]
        write_json(_plan_file(version), entries)
    except (OSError, TypeError, ValueError, AttributeError):
        return  # the cache is an optimisation; failing to write it changes no figure


def _tracker_arguments(intensity: Intensity, cpu_tdp_w: float | None) -> dict[str, Any]:
    """Keep the tracker off the disk and away from the country lookup, in the words this codecarbon knows.

    `output_methods` and `force_carbon_intensity_g_co2e_kwh` came after 3.0.0, which has `save_to_file` and
    needs a country instead (the lookup then costs its ~0.5 s; our CO2 figure uses `intensity` either way). Its
    constructor swallows an argument it does not know and leaves a tracker that measures nothing, so the
    signature is asked first."""
    from codecarbon import EmissionsTracker

    accepted = inspect.signature(EmissionsTracker).parameters
    arguments: dict[str, Any] = {"output_methods": []} if "output_methods" in accepted else {"save_to_file": False}
    if cpu_tdp_w is not None:  # a team's own TDP: codecarbon then estimates from load x this figure, sensor or not
        arguments["force_cpu_power"] = cpu_tdp_w
    if "force_carbon_intensity_g_co2e_kwh" in accepted:
        arguments["force_carbon_intensity_g_co2e_kwh"] = intensity.g_per_kwh
    else:
        arguments["country_iso_code"] = intensity.country_iso_code
    return arguments


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _hardware(tracker: Any) -> list[Any] | None:
    """The hardware objects codecarbon measures with; None where this codecarbon keeps them elsewhere."""
    hardware = getattr(tracker, "_hardware", None)
    return list(hardware) if isinstance(hardware, list | tuple) else None


def _cpu_load_watts_per_core(tracker: Any) -> float | None:
    """TDP / cores of the one CPU codecarbon estimates from load x TDP, the rate its process mode charges a
    core-second at; None where its CPU figure comes from anything else (a sensor, a constant) or where the TDP
    or the core count is not a plausible one, so that codecarbon's own figure stands."""
    cpus = [h for h in _hardware(tracker) or [] if type(h).__name__ == "CPU"]
    if len(cpus) != 1 or getattr(cpus[0], "_mode", None) != "cpu_load":
        return None
    tdp, cores = getattr(cpus[0], "_tdp", None), getattr(cpus[0], "_cpu_count", None)
    if not _is_number(tdp) or not _TDP_RANGE_W[0] <= tdp <= _TDP_RANGE_W[1]:
        return None
    if not isinstance(cores, int) or isinstance(cores, bool) or not 1 <= cores <= (os.cpu_count() or cores):
        return None
    return float(tdp) / cores


def _cpu_tdp(tracker: Any, given: bool) -> tuple[float | None, str]:
    """The TDP (W, the whole machine) codecarbon's CPU estimate used, and where it came from: the team's figure,
    its table's entry for this CPU, its per-thread fallback for a CPU the table lacks, or its generic constant;
    (None, why) where no TDP went into the figure (a sensor) or codecarbon's CPU cannot be read."""
    cpus = [h for h in _hardware(tracker) or [] if type(h).__name__ == "CPU"]
    if len(cpus) != 1:
        return None, "unknown: codecarbon's CPU description could not be read"
    cpu = cpus[0]
    mode, tdp, model = getattr(cpu, "_mode", None), getattr(cpu, "_tdp", None), getattr(cpu, "_model", "this CPU")
    if mode not in ("cpu_load", "constant"):
        return None, f"none: the CPU figure is read from a sensor ({_CPU_MODES.get(str(mode), _UNKNOWN)})"
    if not _is_number(tdp):
        return None, "unknown: codecarbon's TDP could not be read"
    if given:
        return float(tdp), "params: carbon.cpu_tdp_w"
    if getattr(cpu, "_is_generic_tdp", False) is True:
        return float(tdp), f"codecarbon's generic constant ({tdp:g} W): the CPU model was not detected"
    try:
        from codecarbon.core.cpu import DEFAULT_POWER_PER_CORE

        per_thread: Any = DEFAULT_POWER_PER_CORE
    except ImportError:
        per_thread = None
    threads = getattr(cpu, "_cpu_count", None)
    if _is_number(per_thread) and isinstance(threads, int) and math.isclose(tdp, per_thread * threads):
        return float(tdp), (
            f"codecarbon's per-thread fallback ({per_thread:g} W x {threads} threads): {model} is not in its TDP"
            " table; set carbon.cpu_tdp_w to this machine's real figure"
        )
    return float(tdp), f"codecarbon's TDP table entry for {model}"


def _running_kwh(tracker: Any, total: str) -> float | None:
    """One of the tracker's running totals (an Energy, in kWh); None where it is not one."""
    kwh = getattr(getattr(tracker, total, None), "kWh", None)
    return float(kwh) if _is_number(kwh) and kwh >= 0 else None


def _methods(tracker: Any) -> dict[str, str]:
    """Name how codecarbon got each component, from the hardware objects it actually used; `estimated:unknown`
    for every component where those objects cannot be read, and for a CPU mode we do not know."""
    found = _hardware(tracker)
    if found is None:
        return dict.fromkeys(("cpu", "gpu", "ram"), _UNKNOWN)
    methods = {"cpu": "none", "gpu": "none", "ram": "none"}
    for hardware in found:
        kind = type(hardware).__name__
        if kind == "CPU":
            mode = getattr(hardware, "_mode", None)
            methods["cpu"] = _CPU_MODES.get(mode, _UNKNOWN) if isinstance(mode, str) else _UNKNOWN
        elif kind == "AppleSiliconChip":
            methods["cpu"] = "measured:powermetrics"
        elif kind == "GPU":
            methods["gpu"] = "measured:nvml"
        elif kind == "RAM":
            forced = getattr(hardware, "_force_ram_power", None)
            methods["ram"] = "estimated:ram_forced" if forced else "estimated:ram_rule"
    return methods


class EnergyMeter:
    """Start/stop wrapper around one codecarbon OfflineEmissionsTracker (no network, no files)."""

    def __init__(self, carbon: CarbonParams, label: str, wraps_command: bool = False) -> None:
        self._carbon = carbon
        self._label = label
        self._intensity = resolve_intensity(carbon)
        self._tracker: Any = None
        self._version = ""
        self._cpu_seconds_at_start = 0.0
        self._before_s = 0.0
        # process mode charges RAM by the memory the stage holds; machine mode keeps codecarbon's whole-machine rule
        process_mode = carbon.tracking_mode == "process"
        self._memory = MemoryMeter(include_self=not wraps_command) if process_mode else None
        self._lock = threading.Lock()

    def start(self, process_started_at: float | None = None) -> None:
        """`process_started_at` (epoch seconds), given when this process is the stage: the span before the meter
        starts (interpreter, imports, params validation) is then part of its cost: its CPU-seconds count from the
        process's start, and its memory as a ramp from nothing to what is held when the meter starts. A sensor
        (RAPL, NVML) cannot read the past: with one, that span is charged by the estimate only where the CPU figure
        is one."""
        from_process_start = process_started_at is not None
        self._before_s = max(0.0, time.time() - process_started_at) if process_started_at is not None else 0.0
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
            allow_multiple_runs=True,
            log_level=os.environ["CODECARBON_LOG_LEVEL"],
            **_tracker_arguments(self._intensity, self._carbon.cpu_tdp_w),
        )
        self._cpu_seconds_at_start = 0.0 if from_process_start else tree_cpu_seconds()
        if self._memory is not None:
            self._memory.start(ramp_s=self._before_s)
        self._tracker.start()
        _save_plans(self._version)

    @property
    def intensity_g_per_kwh(self) -> float:
        return self._intensity.g_per_kwh

    @property
    def intensity(self) -> Intensity:
        """The grid intensity charged, with where it came from (a figure derived later cites it)."""
        return self._intensity

    def _own_cpu(self, tracker: Any) -> tuple[float, float] | None:
        """(kWh, CPU-seconds): the stage's CPU energy from its own CPU-seconds, when codecarbon's CPU figure is a
        load estimate in process mode; None where codecarbon's figure stands (sensors, machine mode, a CPU we
        cannot read)."""
        watts_per_core = _cpu_load_watts_per_core(tracker) if self._carbon.tracking_mode == "process" else None
        if watts_per_core is None:
            return None
        cpu_seconds = self._cpu_seconds()
        return charged_kwh(cpu_seconds, watts_per_core, self._carbon.pue), cpu_seconds

    def _cpu_seconds(self) -> float:
        """The stage's own CPU-seconds so far: its process tree's, from the process's start or the meter's."""
        return tree_cpu_seconds() - self._cpu_seconds_at_start

    def _ram_kwh(self, gb_seconds: float) -> float:
        return charged_kwh(gb_seconds, self._carbon.ram_w_per_gb, self._carbon.pue)

    def running_reading(self, duration_s: float) -> EnergyReading:
        """A reading of the stage so far, for a checkpoint record: the figures `sample()` gives, and what is known
        before codecarbon's final report (no hardware description yet)."""
        parts = self.sample()
        unknown = {"cpu_model": "unknown", "cpu_count": 0, "gpu_model": "", "gpu_count": 0, "ram_total_gb": 0.0}
        return self._reading(self._before_s + duration_s, parts, self.running_methods(), unknown)

    def _reading(
        self,
        duration_s: float,
        parts: dict[str, float],
        methods: dict[str, str],
        hardware: dict[str, Any],
        ram_gb_s: float | None = None,
        cpu_s: float | None = None,
    ) -> EnergyReading:
        """A reading from its parts (kWh by component): the total, CO2 and how they were charged follow."""
        energy_kwh = parts["cpu"] + parts["gpu"] + parts["ram"]
        return EnergyReading(
            duration_s=duration_s,
            energy_kwh=energy_kwh,
            cpu_energy_kwh=parts["cpu"],
            gpu_energy_kwh=parts["gpu"],
            ram_energy_kwh=parts["ram"],
            co2_kg=energy_kwh * self._intensity.g_per_kwh / 1000,
            carbon_intensity_g_per_kwh=self._intensity.g_per_kwh,
            carbon_intensity_source=self._intensity.source,
            country_iso_code=self._intensity.country_iso_code,
            pue=self._carbon.pue,
            tracking_mode=self._carbon.tracking_mode,
            methods=methods,
            hardware=hardware,
            codecarbon_version=self._version,
            ram_gb_s=ram_gb_s,
            ram_w_per_gb=self._carbon.ram_w_per_gb if ram_gb_s is not None else None,
            cpu_s=cpu_s,
        )

    def sample(self) -> dict[str, float]:
        """Energy so far per component (kWh), measured now: for forecasts and checkpoints while the stage runs."""
        with self._lock:  # the stage's thread forecasts, the checkpoint thread saves: one reader at a time
            tracker = self._tracker
            if tracker is None or tracker.flush() is None:
                raise MeasurementError(f"{self._label}: codecarbon returned no measurement while running")
            ram = (
                self._ram_kwh(self._memory.gb_seconds()) if self._memory else _running_kwh(tracker, "_total_ram_energy")
            )
            gpu = _running_kwh(tracker, "_total_gpu_energy")
            own = self._own_cpu(tracker)
            cpu = own[0] if own is not None else _running_kwh(tracker, "_total_cpu_energy")
            if ram is None or gpu is None or cpu is None:
                raise MeasurementError(f"{self._label}: this codecarbon version hides its running totals")
            return {"cpu": cpu, "gpu": gpu, "ram": ram}

    def sample_kwh(self) -> float:
        """Energy so far, measured now (for forecasts while the stage runs)."""
        return sum(self.sample().values())

    def running_methods(self) -> dict[str, str]:
        """How `sample()` gets each figure, for a checkpoint record."""
        with self._lock:
            tracker = self._tracker
            methods = _methods(tracker) if tracker is not None else {"cpu": _UNKNOWN, "gpu": _UNKNOWN, "ram": _UNKNOWN}
            if tracker is not None and self._own_cpu(tracker) is not None:
                methods["cpu"] = "estimated:cpu_time_x_tdp"
        if self._memory is not None:
            methods["ram"] = RAM_METHOD
        return methods

    def stop(self) -> EnergyReading:
        if self._tracker is None:
            raise MeasurementError(f"{self._label}: the energy tracker was never started")
        with self._lock:
            tracker, self._tracker = self._tracker, None
        own_cpu = self._own_cpu(tracker)
        # the stage's CPU-seconds, whatever its CPU figure: the work a sensor's figure paid for too
        cpu_s = own_cpu[1] if own_cpu is not None else self._cpu_seconds()
        ram_gb_s = self._memory.stop() if self._memory else None
        tracker.stop()
        data = getattr(tracker, "final_emissions_data", None)
        if data is None:
            raise MeasurementError(
                f"{self._label}: codecarbon returned no measurement (set CODECARBON_LOG_LEVEL=warning to see why)"
            )
        methods = _methods(tracker)
        cpu_kwh = float(data.cpu_energy)
        if own_cpu is not None:
            cpu_kwh, methods["cpu"] = own_cpu[0], "estimated:cpu_time_x_tdp"
        ram_kwh = float(data.ram_energy)
        if ram_gb_s is not None:
            ram_kwh, methods["ram"] = self._ram_kwh(ram_gb_s), RAM_METHOD
        for component, kwh in (("cpu", cpu_kwh), ("gpu", data.gpu_energy), ("ram", ram_kwh)):
            if methods[component] == "none" and float(kwh) > 0:
                methods[component] = _UNKNOWN  # a figure from hardware we do not recognise: "none" would deny it
        hardware = {
            "cpu_model": str(data.cpu_model or "unknown"),
            "cpu_count": int(data.cpu_count or 0),
            "gpu_model": str(data.gpu_model or ""),
            "gpu_count": int(data.gpu_count or 0),
            "ram_total_gb": float(data.ram_total_size or 0.0),
        }
        hardware["cpu_tdp_w"], hardware["cpu_tdp_source"] = _cpu_tdp(tracker, self._carbon.cpu_tdp_w is not None)
        if hardware["gpu_count"]:  # NVML's energy counter is the device's: codecarbon has no per-process figure
            hardware["gpu_scope"] = "whole device: every process on the GPU, not this stage alone"
        parts = {"cpu": cpu_kwh, "gpu": float(data.gpu_energy), "ram": ram_kwh}
        return self._reading(self._before_s + float(data.duration), parts, methods, hardware, ram_gb_s, cpu_s)
