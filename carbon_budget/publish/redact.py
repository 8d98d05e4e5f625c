"""Credentials never reach a message, a log or a command line that anyone on the machine can read."""

from __future__ import annotations

import os
import re

# user:password@ after any URI scheme MLflow accepts (http, HTTPS, postgresql, mysql+pymysql, ...), any case
USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
SECRET_ENV = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def redact(text: str) -> str:
    """Strip user:password@ from URIs and mask the known secret values."""
    text = USERINFO.sub(r"\1***@", text)
    for name in SECRET_ENV:
        secret = os.environ.get(name)
        if secret:
            text = text.replace(secret, "***")
    return text


def without_credentials(uri: str) -> str:
    """The URI as a link people can be shown: its user:password@ dropped, not masked."""
    return USERINFO.sub(r"\1", uri)
