"""Grid carbon intensity, read from codecarbon's own data file.

codecarbon resolves a country's intensity by loading all of its reference data through pandas, which costs
about 0.5 s in every process. We read the same JSON file (the figures codecarbon itself uses for a country
on private infrastructure) once, without importing codecarbon, and hand the figure to the tracker.
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

_MIX_FILE = ("data", "private_infra", "global_energy_mix.json")


@cache
def _energy_mix() -> dict[str, Any]:
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("codecarbon is not installed")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_MIX_FILE)
    with path.open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def known_countries() -> list[str]:
    """The ISO 3166-1 alpha-3 codes codecarbon has grid data for."""
    return sorted(_energy_mix())


def country_intensity_g_per_kwh(country_iso_code: str) -> float:
    """Average grid intensity for the country, in g CO2-eq per kWh; KeyError for an unknown code."""
    return float(_energy_mix()[country_iso_code]["carbon_intensity"])


def country_data_year(country_iso_code: str) -> int:
    """The year of the energy-mix figures, so records say how old their intensity is."""
    return int(_energy_mix()[country_iso_code].get("year", 0))
