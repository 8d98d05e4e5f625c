"""What a measurement yields: the value objects between measuring and recording, whoever measured.

codecarbon's meter (`energy.py`) and the charge for work no meter watched (`cpu.charge_usage`) both give an
`EnergyReading`; a stage's record is built from it (`stage.build_record`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    carbon_intensity_source: str
    country_iso_code: str | None
    pue: float
    tracking_mode: str
    methods: dict[str, str]
    hardware: dict[str, Any]
    codecarbon_version: str
    ram_gb_s: float | None = None  # GB-seconds of resident memory, when RAM is charged by what the stage held
    ram_w_per_gb: float | None = None  # the rate those GB-seconds were charged at
    cpu_s: float | None = None  # CPU-seconds of the stage's process tree (in a final reading, always)
