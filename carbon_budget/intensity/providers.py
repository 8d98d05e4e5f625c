"""Intensity series from a file or a live provider (`electricitymaps:ZONE`, `watttime:REGION`, `ukgrid`,
`carbon-aware-sdk:LOCATION`), over HTTP with the standard library.

A provider is a convenience, never a dependency: a whole load has `TIMEOUT_S` to answer, every failure becomes an
`IntensityUnavailable` whose reason the caller shows while it falls back, and no key, password or token ever
appears in that reason. Credentials and base URLs come from the environment only. Responses are cached per
provider, zone and address, so that charging past hours (a stage's record, what a waited command realised) re-reads
nothing the cache covers and works offline.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from carbon_budget.config import intensity_provider
from carbon_budget.errors import IntensityUnavailable
from carbon_budget.files import cache_dir, read_json, write_json
from carbon_budget.intensity.series import IntensitySeries, iso, parse_series, read_series

TIMEOUT_S = 5.0  # for a whole load (WattTime's login included): a provider down or slow costs no more than this
MAX_RESPONSE_BYTES = 20_000_000
PROVIDERS = {
    "electricitymaps": "ELECTRICITYMAPS_API_URL",
    "watttime": "WATTTIME_API_URL",
    "ukgrid": "UKGRID_API_URL",
    "carbon-aware-sdk": "CARBON_AWARE_SDK_URL",
}
DEFAULT_URLS = {
    "electricitymaps": "https://api.electricitymap.org/v3",
    "watttime": "https://api.watttime.org",
    "ukgrid": "https://api.carbonintensity.org.uk",
}
SECRET_VARIABLES = ("ELECTRICITYMAPS_API_TOKEN", "WATTTIME_USERNAME", "WATTTIME_PASSWORD")


def provider_spec(source: str) -> tuple[str, str] | None:
    """(provider, zone) when `source` names a live provider, else None (it is a file); IntensityUnavailable for a
    malformed provider spec (params refuse it before it gets here; `--forecast` does not)."""
    try:
        return intensity_provider(source)
    except ValueError as exc:
        raise IntensityUnavailable(f"{source}: {exc}") from None


def load(
    source: str, root: Path, now: datetime, *, covering: tuple[datetime, datetime] | None = None
) -> IntensitySeries:
    """The series `source` names: a file (relative to `root`) or a live provider asked for its forecast from `now`.

    With `covering` (hours already spent, as a record charges them), a cached response that covers them is used
    without asking the provider. Without it (choosing when to start), the provider is always asked: a decision
    about the hours to come is made on its latest forecast, or on none. Raises IntensityUnavailable with a reason
    that names no secret."""
    spec = provider_spec(source)
    if spec is None:
        path = Path(source).expanduser()
        return read_series(path if path.is_absolute() else root / path, origin=source)
    provider, zone = spec
    base_url = _base_url(provider, source)
    cache = cache_dir() / "intensity" / _cache_name(provider, zone, base_url)
    if covering is not None:
        cached = _cached(cache, source)
        if cached is not None and cached.coverage(*covering) >= 1.0:
            return cached
    body = _fetch(provider, zone, base_url, now, source)
    try:
        series = parse_series(body, source)
    except IntensityUnavailable as exc:
        raise IntensityUnavailable(mask(str(exc))) from None
    write_json(cache, {"fetched_at": iso(datetime.now(UTC)), "source": source, "body": body})
    return series


def mask(text: str) -> str:
    """`text` with every credential the environment holds replaced by ***: a provider's error or address may echo
    one back."""
    secrets = [os.environ.get(name, "") for name in SECRET_VARIABLES]
    for variable in PROVIDERS.values():
        parts = urllib.parse.urlsplit(os.environ.get(variable, ""))
        secrets += [parts.username or "", parts.password or "", parts.query]
    for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _base_url(provider: str, source: str) -> str:
    variable = PROVIDERS[provider]
    url = os.environ.get(variable) or DEFAULT_URLS.get(provider)
    if not url:
        raise IntensityUnavailable(f"{source}: set {variable} to the address of the carbon-aware-sdk WebAPI")
    return url.rstrip("/")


def _cache_name(provider: str, zone: str, base_url: str) -> str:
    """One file per provider, zone and address (a test server's answers never pass for the real provider's)."""
    digest = hashlib.sha256(base_url.encode("utf-8")).hexdigest()[:12]
    return f"{provider}-{re.sub(r'[^A-Za-z0-9_.-]', '_', zone)}-{digest}.json"


def _cached(path: Path, source: str) -> IntensitySeries | None:
    """The cached series, or None when there is none or it cannot be read (then the provider is asked)."""
    try:
        entry = read_json(path)
        return parse_series(str(entry["body"]), f"{source} (cached {entry.get('fetched_at', '')})")
    except (OSError, ValueError, KeyError, TypeError, IntensityUnavailable):
        return None


def _fetch(provider: str, zone: str, base_url: str, now: datetime, source: str) -> str:
    deadline = time.monotonic() + TIMEOUT_S
    quoted = urllib.parse.quote(zone, safe="")
    if provider == "electricitymaps":
        token = _credential("ELECTRICITYMAPS_API_TOKEN", source)
        return _get(f"{base_url}/carbon-intensity/forecast?zone={quoted}", {"auth-token": token}, deadline, source)
    if provider == "watttime":
        user, password = _credential("WATTTIME_USERNAME", source), _credential("WATTTIME_PASSWORD", source)
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        login = _get(f"{base_url}/login", {"Authorization": f"Basic {basic}"}, deadline, source)
        try:
            token = str(json.loads(login)["token"])
        except (ValueError, KeyError, TypeError):
            raise IntensityUnavailable(f"{source}: WattTime's /login answered without a token") from None
        url = f"{base_url}/v3/forecast?region={quoted}&signal_type=co2_moer"
        return _get(url, {"Authorization": f"Bearer {token}"}, deadline, source, token)
    if provider == "ukgrid":
        start = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
        return _get(f"{base_url}/intensity/{start}/fw48h", {}, deadline, source)
    return _get(f"{base_url}/emissions/forecasts/current?location={quoted}", {}, deadline, source)


def _credential(variable: str, source: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise IntensityUnavailable(f"{source}: {variable} is not set (credentials come from the environment only)")
    return value


def _get(url: str, headers: dict[str, str], deadline: float, source: str, token: str = "") -> str:
    """The body of a GET, or IntensityUnavailable saying what went wrong with the host named, never the key."""
    parts = urllib.parse.urlsplit(url)
    where = f"{parts.hostname}{f':{parts.port}' if parts.port else ''}"

    def unavailable(what: str) -> IntensityUnavailable:
        text = mask(f"{source}: {what}")
        return IntensityUnavailable(text.replace(token, "***") if token else text)

    remaining_s = deadline - time.monotonic()
    if remaining_s <= 0:
        raise unavailable(f"{where} did not answer within {TIMEOUT_S:g} s")
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "carbon-budget", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=remaining_s) as response:
            data: bytes = response.read(MAX_RESPONSE_BYTES)
            return data.decode("utf-8")
    except urllib.error.HTTPError as exc:
        refused = " (the credentials were refused)" if exc.code in (401, 403) else ""
        raise unavailable(f"{where} answered HTTP {exc.code} to {parts.path}{refused}") from None
    except (TimeoutError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
            raise unavailable(f"{where} did not answer within {TIMEOUT_S:g} s") from None
        raise unavailable(f"cannot reach {where}: {reason}") from None
    except (OSError, http.client.HTTPException, UnicodeDecodeError) as exc:
        raise unavailable(f"{where}: {type(exc).__name__}: {exc}") from None
