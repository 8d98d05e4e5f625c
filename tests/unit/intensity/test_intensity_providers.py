"""Live providers over HTTP, each replayed by a local server as its documentation describes it (authentication
included), and every way one can fail: a refused key, a dead port, a server that does not answer, a series in the
past, a partial horizon. No network: every server listens on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from carbon_budget.errors import IntensityUnavailable
from carbon_budget.intensity import providers
from carbon_budget.intensity.providers import load
from carbon_budget.intensity.series import parse_time
from carbon_budget.intensity.window import plan
from tests.conftest import GRID

NOW = parse_time("2026-12-01T00:00:00Z")
TOKEN = "em-Tk7secret"
USER, PASSWORD, WT_TOKEN = "wt-user", "wt-Pa55word", "wt-bearer-0123456789"
# what a handler answers: (status, body) for (path, query, headers); header names are case-insensitive, as in HTTP
Respond = Callable[[str, dict[str, list[str]], Message], tuple[int, bytes]]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A cache of this test's own, and no credential or address from the developer's shell."""
    monkeypatch.setenv("CARBON_BUDGET_CACHE_DIR", str(tmp_path / "cache"))
    for name in (*providers.SECRET_VARIABLES, *providers.PROVIDERS.values()):
        monkeypatch.delenv(name, raising=False)


class Servers:
    """Local servers for one test: `serve(respond, delay_s)` starts one answering with `respond` and returns its
    address; `serve.stop()` takes them all down (the provider goes offline)."""

    def __init__(self) -> None:
        self.running: list[ThreadingHTTPServer] = []

    def __call__(self, respond: Respond, delay_s: float = 0.0) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                time.sleep(delay_s)
                status, body = respond(url.path, urllib.parse.parse_qs(url.query), self.headers)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.running.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def stop(self) -> None:
        for server in self.running:
            server.shutdown()
            server.server_close()
        self.running.clear()


@pytest.fixture
def serve() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.stop()


def fixture(name: str) -> bytes:
    return (GRID / name).read_bytes()


def electricitymaps(path: str, query: dict[str, list[str]], headers: Message) -> tuple[int, bytes]:
    if path == "/v3/carbon-intensity/forecast" and query.get("zone") == ["DE"] and headers.get("auth-token") == TOKEN:
        return 200, fixture("electricitymaps-forecast.json")
    return 401, b'{"status": "error", "message": "unauthorized"}'


def watttime(path: str, query: dict[str, list[str]], headers: Message) -> tuple[int, bytes]:
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    if path == "/login" and headers.get("Authorization") == basic:
        return 200, json.dumps({"token": WT_TOKEN}).encode()
    wanted = {"region": ["CAISO_NORTH"], "signal_type": ["co2_moer"]}
    if path == "/v3/forecast" and query == wanted and headers.get("Authorization") == f"Bearer {WT_TOKEN}":
        return 200, fixture("watttime-forecast.json")
    return 401, b"unauthorized"


def ukgrid(path: str, query: dict[str, list[str]], headers: Message) -> tuple[int, bytes]:
    if path == "/intensity/2026-12-01T00:00Z/fw48h":
        return 200, fixture("ukgrid-fw48h.json")
    return 400, b'{"error": {"code": "400 Bad Request"}}'


def carbon_aware_sdk(path: str, query: dict[str, list[str]], headers: Message) -> tuple[int, bytes]:
    if path == "/emissions/forecasts/current" and query.get("location") == ["westeurope"]:
        return 200, fixture("carbon-aware-sdk-forecast.json")
    return 400, b"[]"


@pytest.mark.parametrize(
    ("spec", "respond", "url_variable", "path_prefix", "credentials"),
    [
        ("electricitymaps:DE", electricitymaps, "ELECTRICITYMAPS_API_URL", "/v3", {"ELECTRICITYMAPS_API_TOKEN": TOKEN}),
        (
            "watttime:CAISO_NORTH",
            watttime,
            "WATTTIME_API_URL",
            "",
            {"WATTTIME_USERNAME": USER, "WATTTIME_PASSWORD": PASSWORD},
        ),
        ("ukgrid", ukgrid, "UKGRID_API_URL", "", {}),
        ("carbon-aware-sdk:westeurope", carbon_aware_sdk, "CARBON_AWARE_SDK_URL", "", {}),
    ],
)
def test_each_provider_is_read_as_documented_and_finds_the_same_window(
    spec: str,
    respond: Respond,
    url_variable: str,
    path_prefix: str,
    credentials: dict[str, str],
    serve: Servers,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(url_variable, serve(respond) + path_prefix)
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    window, series = plan(spec, tmp_path, NOW, timedelta(hours=2))
    assert series is not None and series.origin == spec
    assert (window.start, window.mean_g_per_kwh) == (parse_time("2026-12-01T13:00:00Z"), pytest.approx(145.0, abs=0.01))
    cached = "".join(path.read_text() for path in (tmp_path / "cache" / "intensity").iterdir())
    assert '"body"' in cached and not any(secret in cached for secret in (TOKEN, PASSWORD, WT_TOKEN))


@pytest.mark.parametrize(
    ("spec", "respond", "url_variable", "credentials"),
    [
        (
            "electricitymaps:DE",
            electricitymaps,
            "ELECTRICITYMAPS_API_URL",
            {"ELECTRICITYMAPS_API_TOKEN": "em-wrong-token"},
        ),
        (
            "watttime:CAISO_NORTH",
            watttime,
            "WATTTIME_API_URL",
            {"WATTTIME_USERNAME": USER, "WATTTIME_PASSWORD": "nope-pw"},
        ),
    ],
)
def test_a_refused_key_means_start_now_and_the_reason_names_no_secret(
    spec: str,
    respond: Respond,
    url_variable: str,
    credentials: dict[str, str],
    serve: Servers,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(url_variable, serve(respond) + "/v3" * spec.startswith("electricitymaps"))
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    window, series = plan(spec, tmp_path, NOW, timedelta(hours=2))
    assert series is None and window.start == NOW
    assert "HTTP 401" in window.reason and "credentials were refused" in window.reason
    assert not any(value in window.reason for value in credentials.values())


def test_missing_credentials_are_named_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(IntensityUnavailable, match="ELECTRICITYMAPS_API_TOKEN is not set"):
        load("electricitymaps:DE", tmp_path, NOW)
    with pytest.raises(IntensityUnavailable, match="WATTTIME_USERNAME is not set"):
        load("watttime:CAISO_NORTH", tmp_path, NOW)
    with pytest.raises(IntensityUnavailable, match="set CARBON_AWARE_SDK_URL"):
        load("carbon-aware-sdk:westeurope", tmp_path, NOW)


def test_a_dead_port_means_start_now_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("UKGRID_API_URL", f"http://127.0.0.1:{port}")
    window, series = plan("ukgrid", tmp_path, NOW, timedelta(hours=2))
    assert series is None and window.start == NOW and f"cannot reach 127.0.0.1:{port}" in window.reason


def test_a_server_that_does_not_answer_costs_the_timeout_only(
    serve: Servers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(providers, "TIMEOUT_S", 0.5)
    monkeypatch.setenv("UKGRID_API_URL", serve(ukgrid, delay_s=5.0))
    started = time.monotonic()
    window, series = plan("ukgrid", tmp_path, NOW, timedelta(hours=2))
    assert time.monotonic() - started < 4.0  # far under the server's 5 s: the load gave up on its own
    assert series is None and window.start == NOW and "did not answer within 0.5 s" in window.reason


def test_a_provider_series_in_the_past_or_too_short_means_start_now(
    serve: Servers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARBON_AWARE_SDK_URL", serve(carbon_aware_sdk))
    past, _ = plan("carbon-aware-sdk:westeurope", tmp_path, parse_time("2026-12-04T00:00:00Z"), timedelta(hours=2))
    assert past.start == parse_time("2026-12-04T00:00:00Z")
    assert "forecast ended at 2026-12-03T00:00:00Z" in past.reason
    late = parse_time("2026-12-02T23:00:00Z")  # one hour of horizon left for a two-hour job
    partial, _ = plan("carbon-aware-sdk:westeurope", tmp_path, late, timedelta(hours=2))
    assert partial.start == late and "less than 2h from now" in partial.reason


def test_the_cache_serves_hours_it_covers_offline_but_a_decision_asks_afresh(
    serve: Servers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served: list[str] = []

    def counting(path: str, query: dict[str, list[str]], headers: Message) -> tuple[int, bytes]:
        served.append(path)
        return electricitymaps(path, query, headers)

    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", TOKEN)
    monkeypatch.setenv("ELECTRICITYMAPS_API_URL", serve(counting) + "/v3")
    load("electricitymaps:DE", tmp_path, NOW)
    serve.stop()  # offline from here on
    run = (parse_time("2026-12-01T13:10:00Z"), parse_time("2026-12-01T14:40:00Z"))
    cached = load("electricitymaps:DE", tmp_path, NOW, covering=run)
    assert served == ["/v3/carbon-intensity/forecast"] and "(cached " in cached.origin
    assert cached.energy_weighted([(*run, 1.0)]) == (pytest.approx(145.556, abs=0.01), True)
    outside = (parse_time("2026-12-03T01:00:00Z"), parse_time("2026-12-03T02:00:00Z"))
    with pytest.raises(IntensityUnavailable, match="cannot reach"):  # hours the cache lacks are asked for
        load("electricitymaps:DE", tmp_path, NOW, covering=outside)
    with pytest.raises(IntensityUnavailable, match="cannot reach"):  # and so is a forecast to decide on
        load("electricitymaps:DE", tmp_path, NOW)
