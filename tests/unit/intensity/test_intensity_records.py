"""Records charged at the grid's intensity over the hours their energy was spent (`carbon.intensity_series`): a real
stage (real codecarbon, offline) burning CPU across a change of intensity, and every way a series falls back to the
country average, saying why. No network: providers are local servers on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from carbon_budget import grid
from carbon_budget.config import CarbonParams, load_carbon
from carbon_budget.errors import ParamsError
from carbon_budget.intensity import providers
from carbon_budget.intensity.series import iso, read_series
from carbon_budget.measure.stage import StageRun
from carbon_budget.records.record import EmissionRecord

TOKEN = "em-Tk7secret"
FRA_G_PER_KWH = grid.country_intensity_g_per_kwh("FRA")


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A project directory and a provider cache of this test's own, and no credential from the developer's shell."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CARBON_BUDGET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CODECARBON_LOG_LEVEL", "error")
    for name in (*providers.SECRET_VARIABLES, *providers.PROVIDERS.values()):
        monkeypatch.delenv(name, raising=False)


def burn_until(moment: float) -> None:
    while time.time() < moment:
        sum(i * i for i in range(1000))


def write_csv(path: Path, slots: list[tuple[datetime, datetime, float]]) -> None:
    """A canonical CSV; starts to the microsecond, so a change of intensity can fall a second into a run."""
    lines = ["start_utc,duration_min,g_per_kwh,source,generated_at"]
    for start, end, g_per_kwh in slots:
        minutes = (end - start).total_seconds() / 60
        lines.append(
            f"{start.strftime('%Y-%m-%dT%H:%M:%S.%fZ')},{minutes!r},{g_per_kwh},test grid,2026-12-01T00:00:00Z"
        )
    path.write_text("\n".join(lines) + "\n")


def measured(source: str, run_s: float = 0.3, fixed_g_per_kwh: float | None = None) -> tuple[StageRun, EmissionRecord]:
    params = CarbonParams(
        country_iso_code="FRA", intensity_series=source, measure_power_secs=0.25, intensity_g_per_kwh=fixed_g_per_kwh
    )
    with StageRun("s", record_file=Path("s.json"), carbon=params, from_process_start=False) as run:
        burn_until(time.time() + run_s)
    assert run.record is not None and not run.record.doubts()
    return run, run.record


def test_a_change_of_intensity_mid_run_is_charged_as_the_energy_fell_on_each_side() -> None:
    now = datetime.now(UTC)
    change = now + timedelta(seconds=2.5)  # the stage's meter starts within this, and burns on both sides
    write_csv(Path("grid.csv"), [(now - timedelta(hours=1), change, 100.0), (change, now + timedelta(hours=1), 300.0)])
    params = CarbonParams(country_iso_code="FRA", intensity_series="grid.csv", measure_power_secs=0.25)
    with StageRun("s", record_file=Path("s.json"), carbon=params, from_process_start=False) as run:
        burn_until(change.timestamp() + 1.5)
    record = run.record
    assert record is not None and run.grid is not None
    intervals = run.grid.intervals_charged
    assert any(end <= change and kwh > 0 for _, end, kwh in intervals)  # energy spent before the change
    assert any(start >= change and kwh > 0 for start, _, kwh in intervals)  # and after it
    expected, covered = read_series(Path("grid.csv")).energy_weighted(intervals)
    assert covered and expected is not None
    assert 100.0 < record.carbon_intensity_g_per_kwh < 300.0
    assert record.carbon_intensity_g_per_kwh == pytest.approx(expected, rel=1e-12)
    assert record.co2_kg == pytest.approx(record.energy_kwh * expected / 1000, rel=1e-12)
    assert record.carbon_intensity_source.startswith("grid.csv (canonical CSV, test grid, average intensity, generated")
    assert f"energy-weighted over {len(intervals)} meter interval(s)" in record.carbon_intensity_source
    assert json.loads(Path("s.json").read_text())["carbon_intensity_g_per_kwh"] == record.carbon_intensity_g_per_kwh


def test_a_series_in_the_past_falls_back_to_the_country_average_saying_why() -> None:
    write_csv(Path("old.csv"), [(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC), 77.0)])
    _, record = measured("old.csv")
    assert record.carbon_intensity_g_per_kwh == FRA_G_PER_KWH
    assert record.carbon_intensity_source.startswith("codecarbon energy mix FRA")
    assert "(intensity_series old.csv does not cover the run: it ran" in record.carbon_intensity_source
    assert "the series holds 2020-01-01T00:00:00Z to 2020-01-02T00:00:00Z" in record.carbon_intensity_source


def test_a_horizon_that_ends_mid_run_falls_back_rather_than_charge_part_of_it() -> None:
    now = datetime.now(UTC)
    write_csv(Path("short.csv"), [(now - timedelta(hours=1), now + timedelta(seconds=1), 50.0)])
    _, record = measured("short.csv", run_s=2.0)
    assert record.carbon_intensity_g_per_kwh == FRA_G_PER_KWH
    assert "intensity_series short.csv does not cover the run" in record.carbon_intensity_source


def test_a_fixed_intensity_is_the_fallback_when_params_give_one() -> None:
    _, record = measured("missing.csv", fixed_g_per_kwh=42.0)
    assert record.carbon_intensity_g_per_kwh == 42.0
    assert record.carbon_intensity_source == (
        "params: carbon.intensity_g_per_kwh (intensity_series cannot read missing.csv: No such file or directory)"
    )


def forecast_around_now(g_per_kwh: float) -> bytes:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    points = [{"carbonIntensity": g_per_kwh, "datetime": iso(hour + timedelta(hours=h))} for h in range(-1, 4)]
    return json.dumps({"zone": "DE", "forecast": points, "updatedAt": iso(hour)}).encode()


@pytest.fixture
def electricitymaps(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadingHTTPServer]:
    """Electricity Maps' forecast endpoint as documented (header `auth-token`), answering 401 to any other token."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            good = self.path.startswith("/v3/carbon-intensity/forecast?zone=DE") and self.headers["auth-token"] == TOKEN
            self.send_response(200 if good else 401)
            self.end_headers()
            self.wfile.write(forecast_around_now(210.0) if good else b'{"message": "unauthorized"}')

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setenv("ELECTRICITYMAPS_API_URL", f"http://127.0.0.1:{server.server_address[1]}/v3")
    yield server
    server.shutdown()
    server.server_close()


def test_a_provider_charges_the_record_and_its_cache_serves_the_next_stage_offline(
    electricitymaps: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", TOKEN)
    run, record = measured("electricitymaps:DE")
    assert record.carbon_intensity_g_per_kwh == pytest.approx(210.0)
    assert record.carbon_intensity_source.startswith(
        "electricitymaps:DE (Electricity Maps v3 forecast, electricitymaps, zone DE, average intensity, generated"
    )
    assert run.intensity_ahead_g_per_kwh(600) == pytest.approx(210.0)
    electricitymaps.shutdown()  # the provider goes away: the next stage reads what the cache holds
    _, offline = measured("electricitymaps:DE")
    assert offline.carbon_intensity_g_per_kwh == pytest.approx(210.0)
    assert TOKEN not in Path("s.json").read_text()


def test_a_provider_that_refuses_the_key_falls_back_and_names_no_secret(
    electricitymaps: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "em-wrong-token")
    _, record = measured("electricitymaps:DE")
    assert record.carbon_intensity_g_per_kwh == FRA_G_PER_KWH
    assert (
        "answered HTTP 401" in record.carbon_intensity_source
        and "credentials were refused" in record.carbon_intensity_source
    )
    assert "em-wrong-token" not in Path("s.json").read_text()


def test_a_dead_provider_falls_back_within_its_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    monkeypatch.setenv("UKGRID_API_URL", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    _, record = measured("ukgrid")
    assert time.monotonic() - started < providers.TIMEOUT_S + 5
    assert record.carbon_intensity_g_per_kwh == FRA_G_PER_KWH
    assert f"(intensity_series ukgrid: cannot reach 127.0.0.1:{port}" in record.carbon_intensity_source


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("electricitymaps", "electricitymaps needs a zone without spaces: electricitymaps:ZONE"),
        ("watttime:", "watttime needs a zone without spaces: watttime:REGION"),
        ("ukgrid:GB", "ukgrid takes no zone"),
        ("electricitymap:FR", "unknown intensity provider 'electricitymap'"),
    ],
)
def test_a_malformed_provider_spec_is_refused_by_params(source: str, message: str) -> None:
    Path("params.yaml").write_text(f"carbon:\n  intensity_series: {source!r}\n")
    with pytest.raises(ParamsError) as caught:
        load_carbon(Path("params.yaml"))
    assert f"carbon.intensity_series = {source!r}: {message}" in str(caught.value)


def test_files_and_well_formed_specs_are_accepted() -> None:
    for source in ("grid.csv", "forecasts/de.json", "ukgrid", "watttime:CAISO_NORTH", "carbon-aware-sdk:westeurope"):
        assert CarbonParams(intensity_series=source).intensity_series == source
