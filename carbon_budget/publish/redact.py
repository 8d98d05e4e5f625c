"""Credentials never reach a message, a log, a record or a command line that anyone on the machine can read.

A tracking URI's credentials may hold any character one of its parsers takes: SQLAlchemy reads a user name up to
the `:` and the password up to the `@` after it (so `?`, `#`, `/` and spaces pass raw), requests reads the user
information up to the last `@` of the host part, and drivers take `password=` in the query. No parser takes `:` or
`/` in a user name, and what follows the user information is always a host (maybe empty: `@/db` is a unix socket),
a port, then a path, query or fragment. So a URI on its own is masked up to the last `@` of the whole string that is
followed by such a host: a `?` or `#` in the password does not end it, and a query holding an `@` cannot shorten it.
Text that may echo the URI (MLflow's and the drivers' own messages) is also cleared of that URI's secrets verbatim,
and so is anything that repeats the value of a secret-looking environment variable, as CI systems mask secrets:
DVC's shell has expanded `$HF_TOKEN` in a stage's command before the command reaches us.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote, unquote

SCHEME = r"[a-z][a-z0-9+.-]*://"
# a host as any parser reads one: a name, an address, [IPv6] or nothing (a unix socket), then maybe a port
HOST = r"(?:\[[0-9a-z:.%]*\]|[a-z0-9._~%-]*)(?::\d*)?"
# user[:password]@host... for a URI on its own: greedy, so the match ends at the last `@` a host follows
WHOLE = re.compile(rf"({SCHEME})([^:/]*(?::.*)?)@({HOST}(?:[/?#].*)?)", re.IGNORECASE | re.DOTALL)
# a malformed rest (a space in the host): mask up to the last `@` all the same
WHOLE_ANY = re.compile(rf"({SCHEME})([^:/]*(?::.*)?)@(.*)", re.IGNORECASE | re.DOTALL)
# user:password@ inside free text, where a URI ends at a space or a quote: the same rule within that token
_TOKEN = r"[^\s'\"<>]"
_USER = rf"[^:/\s'\"<>]*(?::{_TOKEN}*)?@"
USERINFO = re.compile(
    rf"({SCHEME})(?:{_USER}(?={HOST}(?:[/?#,;)\]\s'\"<>]|$))|{_USER})",
    re.IGNORECASE,
)
# password=..., token=..., api_key=... in a query string (libpq, ODBC and cloud stores take them there); SQLAlchemy
# reads the query to its end, so a `#` does not end the value
QUERY_SECRET = re.compile(
    r"([?&;][a-z_]*(?:password|passwd|pwd|secret|token|key|sig|credential)[a-z_]*=)[^&;\s'\"]*", re.IGNORECASE
)
# a part of a variable's name ending in one of these words: HF_TOKEN, PGPASSWORD, AWS_SECRET_ACCESS_KEY,
# GOOGLE_APPLICATION_CREDENTIALS; not TOKENIZERS_PARALLELISM or KEYBOARD_LAYOUT, whose values are ordinary words
SECRET_NAME = re.compile(r"(?:TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL)S?(?:_|$)")
URI_ENV = "MLFLOW_TRACKING_URI"
MIN_SECRET_CHARS = 4  # a shorter secret masked verbatim would blank every such letter pair of a message


def _split(uri: str) -> tuple[str, str, str] | None:
    """(scheme://, user information, the rest) of a URI on its own; None when it holds no user information."""
    found = WHOLE.fullmatch(uri.strip()) or WHOLE_ANY.fullmatch(uri.strip())
    return None if found is None else (found.group(1), found.group(2), found.group(3))


def secret_env_values() -> list[str]:
    """The values of the environment's secret-looking variables, and the secrets of the tracking URI it names."""
    found = [value for name, value in os.environ.items() if SECRET_NAME.search(name.upper())]
    return found + _uri_secrets(os.environ.get(URI_ENV))


def _uri_secrets(uri: str | None) -> list[str]:
    """A URI's user information and password, and its query secrets."""
    if not uri:
        return []
    found = [m.group(0).partition("=")[2] for m in QUERY_SECRET.finditer(uri)]
    parts = _split(uri)
    if parts is not None:
        found += [parts[1], parts[1].partition(":")[2]]
    return found


def _secrets(uri: str | None) -> list[str]:
    """The literal strings to mask wherever they appear, as written, decoded and encoded; longest first, so a secret
    that holds another is masked whole."""
    found = secret_env_values() + _uri_secrets(uri)
    variants = {form for secret in found for form in (secret, unquote(secret), quote(secret, safe=""))}
    return sorted((s for s in variants if len(s) >= MIN_SECRET_CHARS), key=len, reverse=True)


def redact(text: str, uri: str | None = None) -> str:
    """Mask user information and query secrets in any URI the text holds, every secret of `uri` (the tracking URI in
    use) wherever the text repeats it, and the values of the environment's secret variables (MLFLOW_TRACKING_URI's
    secrets among them). Text that is itself a URI is masked up to the last `@` a host follows, so a password
    holding `?`, `#`, `/`, spaces or `@` is masked whole."""
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
