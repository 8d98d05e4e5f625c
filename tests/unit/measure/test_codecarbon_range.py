"""The codecarbon adapter on the lowest and the highest codecarbon of the supported range, and its fallbacks
where codecarbon's internals are not what it expects.

The adapter reads codecarbon's private attributes (the hardware-plan cache, `tracker._hardware`, the CPU's TDP
and core count, the running totals). The unit tests hand it trackers that lack them or hold something else and
check it falls back to codecarbon's public behaviour. The integration test runs codecarbon_probe.py (beside it) under
the lowest codecarbon (a venv kept in the dev venv and reused, ~40 s to build the first time) and under this
environment's codecarbon (the highest, pinned in constraints.txt).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import codecarbon
import codecarbon.core
import pytest
from codecarbon.core import hardware_cache
from packaging.requirements import Requirement
from packaging.version import Version

from carbon_budget.config import CarbonParams
from carbon_budget.errors import MeasurementError
from carbon_budget.measure.energy import (
    _CPU_MODES,
    EnergyMeter,
    _cpu_tdp,
    _load_plans,
    _methods,
    _save_plans,
    _tracker_arguments,
    resolve_intensity,
)
from tests.conftest import ROOT, run

LOWEST = "3.0.0"  # the lower bound of `codecarbon>=3.0,<4`; it installs and imports here on Python 3.11
# the adapter imports none of these; codecarbon's own requirements come with it
NOT_NEEDED = {"mlflow", "dvc", "codecarbon"}
PROBE = Path(__file__).with_name("codecarbon_probe.py")
PIP_TIMEOUT_S = 900.0
UNKNOWN = "estimated:unknown"
# the adapter's own attribution, or codecarbon's figure under codecarbon's method where the attribution fell back
CPU_METHODS = {"estimated:cpu_time_x_tdp", *_CPU_MODES.values(), UNKNOWN}


class CPU:
    """Named as codecarbon's CPU class is, which is all the adapter goes by."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


class Raspberry:
    """Hardware the adapter has no label for."""


def energy(kwh: Any) -> SimpleNamespace:
    return SimpleNamespace(kWh=kwh)


def emissions_data(cpu_kwh: float, gpu_kwh: float, ram_kwh: float) -> SimpleNamespace:
    return SimpleNamespace(
        duration=1.0,
        cpu_energy=cpu_kwh,
        gpu_energy=gpu_kwh,
        ram_energy=ram_kwh,
        cpu_model="test",
        cpu_count=2,
        gpu_model=None,
        gpu_count=0,
        ram_total_size=4.0,
    )


class FakeTracker:
    """What the meter reads of a started tracker, with only the attributes a test gives it."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)

    def flush(self) -> float:
        return 0.0

    def stop(self) -> None:
        return None


def assert_recordable(methods: dict[str, str]) -> None:
    """A record accepts these methods (the record module is imported here, so only tests that need it need it)."""
    from carbon_budget.records.record import Methods

    Methods(**methods)


def started_meter(tracker: FakeTracker, tracking_mode: Literal["process", "machine"] = "process") -> EnergyMeter:
    """A meter around a fake tracker. In process mode RAM is charged by the memory the stage holds (its own meter,
    not started here); codecarbon's RAM figure stands in machine mode, so tests of that figure use it."""
    meter = EnergyMeter(CarbonParams(tracking_mode=tracking_mode), "unit")
    meter._tracker = tracker
    return meter


# unit tests: no extra venv


def test_methods_say_unknown_where_codecarbon_hides_its_hardware() -> None:
    methods = _methods(SimpleNamespace())
    assert methods == {"cpu": UNKNOWN, "gpu": UNKNOWN, "ram": UNKNOWN}
    assert_recordable(methods)
    assert _methods(SimpleNamespace(_hardware="not a list")) == methods


@pytest.mark.parametrize("mode", ["amd_rapl", None, 3])
def test_an_unknown_cpu_mode_is_labelled_unknown_not_guessed(mode: Any) -> None:
    assert _methods(SimpleNamespace(_hardware=[CPU(_mode=mode)]))["cpu"] == UNKNOWN
    assert _methods(SimpleNamespace(_hardware=[CPU()]))["cpu"] == UNKNOWN


@pytest.mark.parametrize(
    "cpu",
    [
        CPU(_mode="cpu_load", _cpu_count=2),  # no TDP
        CPU(_mode="cpu_load", _tdp=8),  # no core count
        CPU(_mode="cpu_load", _tdp="8", _cpu_count=2),
        CPU(_mode="cpu_load", _tdp=0.008, _cpu_count=2),  # kW, not W
        CPU(_mode="cpu_load", _tdp=float("nan"), _cpu_count=2),
        CPU(_mode="cpu_load", _tdp=8, _cpu_count=0),
        CPU(_mode="cpu_load", _tdp=8, _cpu_count=True),
        CPU(_mode="cpu_load", _tdp=8, _cpu_count=(os.cpu_count() or 1) + 1),  # more cores than this machine has
        CPU(_mode="intel_rapl", _tdp=8, _cpu_count=2),  # a sensor: its figure stands
        CPU(_tdp=8, _cpu_count=2),
    ],
)
def test_cpu_attribution_falls_back_to_codecarbons_figure_on_anything_unexpected(cpu: CPU) -> None:
    tracker = FakeTracker(_hardware=[cpu])
    assert started_meter(tracker)._own_cpu(tracker) is None


def test_cpu_attribution_applies_to_a_plausible_load_estimate_in_process_mode_only() -> None:
    tracker = FakeTracker(_hardware=[CPU(_mode="cpu_load", _tdp=8, _cpu_count=1)])
    assert (started_meter(tracker)._own_cpu(tracker) or (0, 0))[0] > 0  # the whole test process's CPU time so far
    assert started_meter(tracker, "machine")._own_cpu(tracker) is None
    assert started_meter(FakeTracker())._own_cpu(FakeTracker()) is None  # no hardware to read


def test_the_tdp_used_is_named_with_where_it_came_from() -> None:
    def tdp(cpu: CPU, given: bool = False) -> tuple[float | None, str]:
        return _cpu_tdp(FakeTracker(_hardware=[cpu]), given)

    table = CPU(_mode="cpu_load", _tdp=65, _cpu_count=12, _model="AMD Ryzen 5 3600")
    assert tdp(table) == (65.0, "codecarbon's TDP table entry for AMD Ryzen 5 3600")
    fallback_w, fallback = tdp(CPU(_mode="cpu_load", _tdp=8, _cpu_count=2, _model="Intel(R) Xeon(R) Processor"))
    assert fallback_w == 8.0 and fallback.startswith("codecarbon's per-thread fallback (4 W x 2 threads)")
    assert "not in its TDP table" in fallback and "carbon.cpu_tdp_w" in fallback
    generic = CPU(_mode="cpu_load", _tdp=85, _cpu_count=2, _is_generic_tdp=True)
    assert tdp(generic) == (85.0, "codecarbon's generic constant (85 W): the CPU model was not detected")
    assert tdp(CPU(_mode="cpu_load", _tdp=120, _cpu_count=2), given=True) == (120.0, "params: carbon.cpu_tdp_w")
    assert tdp(CPU(_mode="intel_rapl", _tdp=8, _cpu_count=2)) == (
        None,
        "none: the CPU figure is read from a sensor (measured:rapl)",
    )
    assert _cpu_tdp(FakeTracker(), False)[0] is None  # hardware it cannot read: no figure claimed


def test_a_given_tdp_reaches_codecarbon() -> None:
    intensity = resolve_intensity(CarbonParams(intensity_g_per_kwh=42.0))
    assert _tracker_arguments(intensity, 120.0)["force_cpu_power"] == 120.0


@pytest.mark.parametrize(
    "totals",
    [
        {},
        {"_total_ram_energy": 1e-6, "_total_gpu_energy": 0.0, "_total_cpu_energy": 1e-6},  # plain numbers
        {"_total_ram_energy": energy("1e-6"), "_total_gpu_energy": energy(0.0), "_total_cpu_energy": energy(1e-6)},
        {"_total_ram_energy": energy(-1e-6), "_total_gpu_energy": energy(0.0), "_total_cpu_energy": energy(1e-6)},
        {"_total_ram_energy": energy(1e-6), "_total_gpu_energy": energy(0.0)},
    ],
)
def test_a_sample_from_totals_it_cannot_read_is_an_error_not_a_number(totals: dict[str, Any]) -> None:
    with pytest.raises(MeasurementError, match="hides its running totals"):
        started_meter(FakeTracker(**totals), "machine").sample_kwh()


def test_a_sample_without_readable_hardware_is_codecarbons_own_figure() -> None:
    totals = {"_total_ram_energy": energy(2e-6), "_total_gpu_energy": energy(0.0), "_total_cpu_energy": energy(1e-6)}
    assert started_meter(FakeTracker(**totals), "machine").sample_kwh() == pytest.approx(3e-6)


def test_a_reading_without_readable_hardware_keeps_codecarbons_figures_and_says_unknown() -> None:
    tracker = FakeTracker(final_emissions_data=emissions_data(1e-6, 0.0, 2e-6))
    reading = started_meter(tracker, "machine").stop()
    assert (reading.cpu_energy_kwh, reading.ram_energy_kwh, reading.energy_kwh) == (1e-6, 2e-6, pytest.approx(3e-6))
    assert reading.methods == {"cpu": UNKNOWN, "gpu": UNKNOWN, "ram": UNKNOWN}


def test_energy_from_hardware_without_a_label_is_never_labelled_none() -> None:
    tracker = FakeTracker(_hardware=[Raspberry()], final_emissions_data=emissions_data(1e-6, 0.0, 2e-6))
    assert started_meter(tracker, "machine").stop().methods == {"cpu": UNKNOWN, "gpu": "none", "ram": UNKNOWN}


def test_tracker_arguments_follow_the_codecarbon_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    intensity = resolve_intensity(CarbonParams(intensity_g_per_kwh=42.0))
    assert _tracker_arguments(intensity, None) == {"output_methods": [], "force_carbon_intensity_g_co2e_kwh": 42.0}

    class Tracker300:  # the constructor of codecarbon 3.0.0, as far as these arguments go
        def __init__(self, project_name: str | None = None, save_to_file: bool | None = None) -> None: ...

    monkeypatch.setattr(codecarbon, "EmissionsTracker", Tracker300)
    assert _tracker_arguments(intensity, None) == {"save_to_file": False, "country_iso_code": "USA"}


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[Any, Any]]:
    """An empty plan cache of this process's codecarbon, and a cache directory of the test's own."""
    fresh: dict[Any, Any] = {}
    monkeypatch.setattr(hardware_cache, "_plans", fresh)
    monkeypatch.setenv("CARBON_BUDGET_CACHE_DIR", str(tmp_path))
    yield fresh


def plan_entry(**plan_changes: Any) -> dict[str, Any]:
    key: dict[str, Any] = {field.name: False for field in dataclasses.fields(hardware_cache._HardwareCacheKey)}
    key["tracking_mode"] = "process"
    plan = {
        "ram_tracker": "RAM",
        "cpu_tracker": "TDP",
        "gpu_tracker": "Unspecified",
        "conf": {"cpu_count": 2},
        "hardware_specs": [{"kind": "ram", "tracking_mode": "process", "force_ram_power": None}],
    }
    return {"key": key, "plan": {**plan, **plan_changes}}


def write_plans(tmp_path: Path, version: str, entries: list[dict[str, Any]]) -> None:
    _save_plans(version)  # the file name is the adapter's to choose
    (path,) = tmp_path.glob(f"hardware-plan-codecarbon{version}-*.json")
    path.write_text(json.dumps(entries))


def test_a_saved_plan_of_the_expected_shape_is_reused(plans: dict[Any, Any], tmp_path: Path) -> None:
    write_plans(tmp_path, "test", [plan_entry()])
    _load_plans("test")
    assert len(plans) == 1


@pytest.mark.parametrize(
    "entries",
    [
        [plan_entry(), plan_entry(hardware_specs=[])],  # would measure nothing: none of the file is used
        [plan_entry(hardware_specs=[{"tracking_mode": "process"}])],
        [plan_entry(conf=None)],
        [plan_entry(extra_field=1)],  # written by a codecarbon with other plans
        [{"key": {"tracking_mode": "process"}, "plan": plan_entry()["plan"]}],
        {"not": "a list"},
    ],
)
def test_a_saved_plan_of_another_shape_is_ignored_and_codecarbon_probes(
    plans: dict[Any, Any], tmp_path: Path, entries: Any
) -> None:
    write_plans(tmp_path, "test", entries)
    _load_plans("test")
    assert plans == {}


def test_a_codecarbon_without_the_plan_cache_probes_as_usual(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CARBON_BUDGET_CACHE_DIR", str(tmp_path))
    monkeypatch.delattr(codecarbon.core, "hardware_cache")
    monkeypatch.setitem(sys.modules, "codecarbon.core.hardware_cache", None)  # importing it fails, as on 3.0.0
    _load_plans("test")
    _save_plans("test")
    assert list(tmp_path.iterdir()) == []


def test_a_plan_cache_of_another_shape_is_left_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CARBON_BUDGET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(hardware_cache, "_plans", [])
    _save_plans("test")
    assert list(tmp_path.iterdir()) == []


# integration: the real codecarbon at both ends of the range


def lowest_requirements() -> list[str]:
    """The project's own requirements, less the tools the adapter does not import, with codecarbon at `LOWEST`
    (checked to be the lower bound the project declares)."""
    declared = [
        Requirement(line) for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    (codecarbon_range,) = [r.specifier for r in declared if r.name == "codecarbon"]
    lower = [Version(s.version) for s in codecarbon_range if s.operator == ">="]
    assert lower == [Version(LOWEST)], f"pyproject declares codecarbon{codecarbon_range}; update LOWEST"
    return sorted([str(r) for r in declared if r.name not in NOT_NEEDED] + [f"codecarbon=={LOWEST}"])


def lowest_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding codecarbon `LOWEST`: kept inside the dev venv and reused while the requirements are the same
    (under a lock, for parallel test runs); a fresh one where the tests do not run from a venv."""
    requirements = lowest_requirements()
    in_venv = sys.prefix != sys.base_prefix
    home = Path(sys.prefix) / f"codecarbon-{LOWEST}" if in_venv else tmp_path_factory.mktemp("codecarbon-lowest")
    ready = home / "requirements.json"
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f"{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists() or json.loads(ready.read_text()) != requirements:
            shutil.rmtree(home, ignore_errors=True)
            run([sys.executable, "-m", "venv", "--without-pip", str(home)], home.parent)
            pip = [sys.executable, "-m", "pip", "--python", str(home / "bin" / "python"), "install", "--quiet"]
            run([*pip, *requirements], home.parent, timeout=PIP_TIMEOUT_S)
            ready.write_text(json.dumps(requirements))
    return home / "bin" / "python"


def probe(python: Path, cwd: Path) -> dict[str, Any]:
    """Run the probe under `python` with this checkout importable, no CODECARBON_* settings, a plan cache of its
    own, from `cwd`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODECARBON_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(ROOT), CARBON_BUDGET_CACHE_DIR=str(cwd / "cache"))
    result = run([str(python), str(PROBE)], cwd, env, timeout=300)
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "ok", f"{outcome}\n{result.stderr}"
    return outcome


@pytest.mark.integration
@pytest.mark.parametrize("end", ["lowest", "highest"])
def test_the_adapter_measures_correctly_at_both_ends_of_the_range(
    end: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    python = lowest_python(tmp_path_factory) if end == "lowest" else Path(sys.executable)
    outcome = probe(python, tmp_path)
    reading = outcome["reading"]
    assert reading["codecarbon_version"] == (LOWEST if end == "lowest" else codecarbon.__version__)
    if not outcome["plan_cache"]:  # 3.0.0: codecarbon probed the hardware itself and there was nothing to keep
        assert not list((tmp_path / "cache").glob("hardware-plan-*"))

    cpu, gpu, ram = reading["cpu_energy_kwh"], reading["gpu_energy_kwh"], reading["ram_energy_kwh"]
    assert reading["energy_kwh"] > 0 and cpu > 0 and ram > 0
    assert reading["energy_kwh"] == pytest.approx(cpu + gpu + ram, rel=1e-9)
    assert reading["co2_kg"] == pytest.approx(reading["energy_kwh"] * reading["carbon_intensity_g_per_kwh"] / 1000)
    assert 0 < outcome["sample_kwh"] <= reading["energy_kwh"] * (1 + 1e-9)  # sampled before the end
    assert cpu * 3.6e6 / reading["duration_s"] <= 5000  # watts: a plausible CPU, not a unit mistake

    methods = reading["methods"]
    assert_recordable(methods)
    assert methods["cpu"] in CPU_METHODS, methods
    if not Path("/sys/class/powercap/intel-rapl").exists():
        assert methods["cpu"] != UNKNOWN, "codecarbon's load estimate is known at both ends"
    assert methods["ram"] == "estimated:rss_x_w_per_gb"  # process mode: the memory the probe held, any version
    assert methods["gpu"] in {"none", "measured:nvml"}
    if methods["gpu"] == "none":
        assert gpu == 0
    assert not (tmp_path / "emissions.csv").exists(), "the tracker wrote codecarbon's CSV"
