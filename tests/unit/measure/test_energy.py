"""The codecarbon adapter, with real codecarbon in offline mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carbon_budget import grid
from carbon_budget.config import CarbonParams
from carbon_budget.errors import MeasurementError
from carbon_budget.measure.cpu import tree_cpu_seconds
from carbon_budget.measure.energy import EnergyMeter, resolve_intensity
from carbon_budget.records.record import EmissionRecord

PROBE = """
import json, sys, time
from carbon_budget.config import CarbonParams
from carbon_budget.measure.energy import EnergyMeter
meter = EnergyMeter(CarbonParams(), "probe")
meter.start()
end = time.time() + 0.3
while time.time() < end:
    pass
reading = meter.stop()
print(json.dumps({"methods": reading.methods, "hardware": reading.hardware, "energy_kwh": reading.energy_kwh,
                  "probed": "cpuinfo" in sys.modules}))
"""


def probe(cache: Path) -> dict[str, object]:
    env = {**os.environ, "CARBON_BUDGET_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_measures_positive_energy_and_says_it_is_estimated_here() -> None:
    meter = EnergyMeter(CarbonParams(), "unit")
    meter.start()
    end = time.time() + 0.3
    while time.time() < end:
        pass
    reading = meter.stop()
    assert reading.energy_kwh > 0
    assert reading.energy_kwh == pytest.approx(
        reading.cpu_energy_kwh + reading.gpu_energy_kwh + reading.ram_energy_kwh, rel=1e-6
    )
    assert reading.co2_kg == pytest.approx(reading.energy_kwh * reading.carbon_intensity_g_per_kwh / 1000, rel=1e-6)
    assert set(reading.methods) == {"cpu", "gpu", "ram"}
    assert all(m.startswith(("measured:", "estimated:")) or m == "none" for m in reading.methods.values())
    if not Path("/sys/class/powercap/intel-rapl").exists():
        assert reading.methods["cpu"].startswith("estimated:")
    assert reading.country_iso_code == "USA"


def busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_teams_own_tdp_is_used_and_named() -> None:
    """`carbon.cpu_tdp_w` replaces codecarbon's figure: the CPU energy is the stage's CPU-seconds x TDP / threads."""
    meter = EnergyMeter(CarbonParams(cpu_tdp_w=120.0), "unit")
    meter.start()
    busy(0.3)
    reading = meter.stop()
    assert reading.hardware["cpu_tdp_w"] == 120.0 and reading.hardware["cpu_tdp_source"] == "params: carbon.cpu_tdp_w"
    if reading.methods["cpu"] == "estimated:cpu_time_x_tdp":
        assert reading.cpu_s is not None and reading.cpu_s >= 0.3
        threads = reading.hardware["cpu_count"]
        assert reading.cpu_energy_kwh == pytest.approx(reading.cpu_s * 120.0 / threads / 3.6e6, rel=1e-6)


def test_a_stage_is_charged_from_its_process_start(tmp_path: Path) -> None:
    """The work before the meter starts (here 0.5 CPU-s of it, like imports) is in the record, and the span too."""
    script = f"""
import json, time
end = time.process_time() + 0.5
while time.process_time() < end:
    pass
from pathlib import Path
from carbon_budget.measure.stage import StageRun
for flag in (True, False):
    with StageRun("unit", record_file=Path({str(tmp_path)!r}) / f"{{flag}}.json", from_process_start=flag) as run:
        pass
    print(json.dumps(run.record.model_dump(mode="json")))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    whole, metered = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert whole["tags"]["charged_from"] == "process start" and metered["tags"]["charged_from"] == "meter start"
    if "cpu_s" in whole["extra_metrics"]:  # CPU charged by CPU-seconds (no RAPL here)
        assert whole["extra_metrics"]["cpu_s"] >= 0.5 > metered["extra_metrics"]["cpu_s"]
        assert whole["cpu_energy_kwh"] > 2 * metered["cpu_energy_kwh"]
    assert whole["duration_s"] >= whole["extra_metrics"]["startup_s"] > metered["duration_s"]
    assert whole["extra_metrics"]["ram_gb_s"] > metered["extra_metrics"]["ram_gb_s"]


def test_hardware_plan_is_probed_once_per_machine_with_the_same_result(tmp_path: Path) -> None:
    first = probe(tmp_path)
    second = probe(tmp_path)
    assert first["probed"] is True  # the first process ran codecarbon's own hardware probe
    assert second["probed"] is False  # the second reused its plan instead of probing again
    assert first["methods"] == second["methods"]
    assert first["hardware"] == second["hardware"]
    assert list(tmp_path.glob("hardware-plan-*.json"))


def test_intensity_override_and_country_figure() -> None:
    assert resolve_intensity(CarbonParams(intensity_g_per_kwh=42.0)).g_per_kwh == 42.0
    france = resolve_intensity(CarbonParams(country_iso_code="FRA"))
    assert france.g_per_kwh == grid.country_intensity_g_per_kwh("FRA") < 100
    assert "FRA" in france.source


def test_stop_without_start_is_an_error_not_zero() -> None:
    with pytest.raises(MeasurementError):
        EnergyMeter(CarbonParams(), "never").stop()


def test_tree_cpu_seconds_count_a_launched_process_and_its_children_once() -> None:
    """What a launcher such as torchrun and the processes it waits for burn is the caller's, counted once."""
    busy = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"
    launcher = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {busy!r}], check=True)"
    before = tree_cpu_seconds()
    subprocess.run([sys.executable, "-c", launcher], check=True)
    spent = tree_cpu_seconds() - before
    assert 0.5 <= spent < 0.5 + 1.5  # the grandchild's 0.5 s once, plus two interpreters' start-up


def test_the_tools_own_usage_is_charged_at_its_executions_rates() -> None:
    """Hand-computed: 10 CPU-s at 8 W / 2 threads and 5 GB-s at 0.392 W/GB, PUE 1.5, 400 g/kWh."""
    from carbon_budget.measure.cpu import charge_usage
    from tests.conftest import record

    like = record("gate", 1e-6).model_copy(
        update={
            "pue": 1.5,
            "carbon_intensity_g_per_kwh": 400.0,
            "hardware": record("gate", 1e-6).hardware.model_copy(update={"cpu_tdp_w": 8.0, "cpu_count": 2}),
            "extra_metrics": {"ram_w_per_gb": 0.392},
        }
    )
    reading = charge_usage(10.0, 5.0, 3.0, [like])
    assert reading.cpu_energy_kwh == pytest.approx(10 * 4 * 1.5 / 3.6e6)
    assert reading.ram_energy_kwh == pytest.approx(5 * 0.392 * 1.5 / 3.6e6)
    assert reading.energy_kwh == pytest.approx(reading.cpu_energy_kwh + reading.ram_energy_kwh)
    assert reading.co2_kg == pytest.approx(reading.energy_kwh * 0.4)
    assert reading.methods == {"cpu": "estimated:cpu_time_x_tdp", "gpu": "none", "ram": "estimated:rss_x_w_per_gb"}
    sensor = like.model_copy(update={"hardware": like.hardware.model_copy(update={"cpu_tdp_w": None})})
    with pytest.raises(MeasurementError, match="cannot be charged"):  # no rate is guessed, and no silent zero
        charge_usage(10.0, 5.0, 3.0, [sensor])
    assert charge_usage(0.0, 5.0, 3.0, [sensor]).methods["cpu"] == "none"  # no CPU work: nothing to charge


def test_every_reading_holds_the_stages_cpu_seconds_however_its_cpu_was_charged() -> None:
    """In machine mode codecarbon's CPU figure stands, as a RAPL reading does: the CPU-seconds are still kept, the
    work the tool's own line is charged against where no TDP exists."""
    meter = EnergyMeter(CarbonParams(tracking_mode="machine"), "machine")
    meter.start()
    busy(0.3)
    reading = meter.stop()
    assert reading.methods["cpu"] != "estimated:cpu_time_x_tdp"  # not charged by its CPU-seconds
    assert reading.cpu_s is not None and reading.cpu_s >= 0.3


def rapl_record(stage: str, cpu_energy_kwh: float, cpu_s: float, mode: str) -> EmissionRecord:
    """A stage record as a host where RAPL measures the CPU writes it: the CPU figure read from the sensor, so no
    TDP went into it; RAM by the memory held in process mode, codecarbon's rule in machine mode."""
    from tests.conftest import record

    ram_energy_kwh, pue = 1e-6, 1.2
    energy_kwh = cpu_energy_kwh + ram_energy_kwh
    process = mode == "process"
    return EmissionRecord.model_validate(
        {
            **record(stage, energy_kwh).model_dump(),
            "energy_kwh": energy_kwh,
            "cpu_energy_kwh": cpu_energy_kwh,
            "ram_energy_kwh": ram_energy_kwh,
            "co2_kg": energy_kwh * 0.4,
            "pue": pue,
            "tracking_mode": mode,
            "methods": {
                "cpu": "measured:rapl",
                "gpu": "none",
                "ram": "estimated:rss_x_w_per_gb" if process else "estimated:ram_rule",
            },
            "hardware": {
                "cpu_model": "Intel(R) Xeon(R) Gold 6338",
                "cpu_count": 64,
                "gpu_model": "",
                "gpu_count": 0,
                "ram_total_gb": 256.0,
                "cpu_tdp_w": None,
                "cpu_tdp_source": "none: the CPU figure is read from a sensor (measured:rapl)",
            },
            "extra_metrics": {"cpu_s": cpu_s, **({"ram_gb_s": 2.0, "ram_w_per_gb": 0.392} if process else {})},
        }
    )


@pytest.mark.parametrize("mode", ["process", "machine"])
def test_on_a_rapl_host_the_tools_own_line_is_charged_what_the_stages_measured(mode: str, tmp_path: Path) -> None:
    """No TDP where RAPL measures the CPU: the tool's CPU-seconds are charged at the stages' measured CPU energy per
    CPU-second, and the line says so. Without that, process mode charged its CPU nothing, and machine mode (no RAM
    rate either) wrote a zero line every later gate refused."""
    from carbon_budget import layout
    from carbon_budget.publish.itself import record_itself
    from carbon_budget.records.record import load_record

    train = rapl_record("train", 2e-5, 4.0, mode)
    gate = rapl_record("gate", 1e-7, 0.5, mode)
    snapshot = {
        "work_dir": str(tmp_path),
        "verdict": {"stages": {"train": {}}},
        "entries": [{"record": r.model_dump(mode="json")} for r in (train, gate)],
    }
    itself = record_itself(snapshot, None, "", cpu_s=2.0, ram_gb_s=1.0, duration_s=3.0, covers="w")
    assert itself is not None
    watts = (2e-5 + 1e-7) / 1.2 * 3.6e6 / 4.5  # 2.01e-5 kWh before PUE over 4.5 CPU-s: 13.4 W a CPU-second
    assert watts == pytest.approx(13.4)
    assert itself.cpu_energy_kwh == pytest.approx((2.0 + 0.5) * watts * 1.2 / 3.6e6)
    assert itself.methods.cpu == "estimated:cpu_time_x_stage_rate"
    assert "measured:rapl" in itself.hardware.cpu_tdp_source and "train, gate" in itself.hardware.cpu_tdp_source
    assert itself.hardware.cpu_tdp_w is None  # no TDP is claimed
    saved = load_record(tmp_path / layout.ITSELF_RECORD)
    assert saved.energy_kwh > 0 and not saved.doubts()  # a line the next gate can count
