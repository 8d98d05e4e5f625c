"""Credentials never reach a message, a log or a command line that anyone on the machine can read.

A tracking URI's credentials may hold any character its parser takes: SQLAlchemy reads a password up to the `@`
(so `/` and spaces are allowed), requests reads the user information up to the last `@` of the host part, and
drivers take `password=` in the query. So a URI on its own is masked up to its last `@` before the query, and
text that may echo it (MLflow's and the drivers' own messages) is also cleared of that URI's secrets verbatim.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote, unquote

SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
# user:password@ inside free text, any scheme and any case: up to the last @ of the URI's token
USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^\s?#'\"<>]*@", re.IGNORECASE)
# password=..., token=..., api_key=... in a query string (libpq, ODBC and cloud stores take them there)
QUERY_SECRET = re.compile(
    r"([?&;][a-z_]*(?:password|passwd|pwd|secret|token|key|sig|credential)[a-z_]*=)[^&;#\s'\"]*", re.IGNORECASE
)
SECRET_ENV = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
MIN_SECRET_CHARS = 4  # a shorter secret masked verbatim would blank every such letter pair of a message


def _split(uri: str) -> tuple[str, str, str] | None:
    """(scheme://, user information, the rest) of a URI on its own; None when it holds no user information."""
    scheme = SCHEME.match(uri.strip())
    if scheme is None:
        return None
    rest = uri.strip()[scheme.end() :]
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    if "@" not in head:
        return None
    at = head.rindex("@")
    return scheme.group(0), rest[:at], rest[at + 1 :]


def _secrets(uri: str | None) -> list[str]:
    """The literal strings to mask wherever they appear: the URI's user information and password (as written and
    decoded), its query secrets, and the secret variables MLflow reads."""
    found = [os.environ.get(name, "") for name in SECRET_ENV]
    for candidate in (uri, os.environ.get("MLFLOW_TRACKING_URI")):
        if not candidate:
            continue
        parts = _split(candidate)
        if parts is not None:
            userinfo = parts[1]
            found += [userinfo, userinfo.partition(":")[2]]
        found += [m.group(0).partition("=")[2] for m in QUERY_SECRET.finditer(candidate)]
    variants = {form for secret in found for form in (secret, unquote(secret), quote(secret, safe=""))}
    return sorted((s for s in variants if len(s) >= MIN_SECRET_CHARS), key=len, reverse=True)


def redact(text: str, uri: str | None = None) -> str:
    """Mask user information and query secrets in any URI the text holds, and every secret of `uri` (the tracking
    URI in use; MLFLOW_TRACKING_URI is always taken) wherever the text repeats it. Text that is itself a URI is
    masked up to its last `@`, so a password holding `/`, spaces or `@` is masked whole."""
    parts = _split(text)
    if parts is not None and not any(ch.isspace() for ch in parts[0] + parts[2]):
        text = f"{parts[0]}***@{parts[2]}"
    for secret in _secrets(uri if uri is not None else text):
        text = text.replace(secret, "***")
    text = USERINFO.sub(r"\1***@", text)
    return QUERY_SECRET.sub(r"\1***", text)


def without_credentials(uri: str) -> str:
    """The URI as a link people can be shown: its user information dropped, not masked, and query secrets masked."""
    parts = _split(uri)
    if parts is not None:
        uri = parts[0] + parts[2]
    return QUERY_SECRET.sub(r"\1***", uri)
