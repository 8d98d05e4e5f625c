"""Credentials in any tracking URI MLflow accepts are masked wherever a message, log or command line shows it."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from carbon_budget.publish.redact import redact, without_credentials
from carbon_budget.publish.tracking import ui_url


@pytest.mark.parametrize(
    "uri",
    [
        "https://alice:secret@mlflow.example.org",
        "HTTPS://alice:secret@mlflow.example.org",
        "http://alice:secret@127.0.0.1:5000",
        "postgresql://alice:secret@db/mlflow",
        "postgresql+psycopg2://alice:secret@db:5432/mlflow",
        "mysql+pymysql://alice:secret@h/db",
        "MSSQL+pyodbc://alice:secret@h/db",
        "databricks://alice:secret@workspace",
        "postgresql://alice:se/cret@db/mlflow",  # SQLAlchemy reads the password up to the @: `/` is allowed
        "mysql+pymysql://alice:se cret@h/db",  # and so is a space
        "https://alice:se@cret@mlflow.example.org",  # requests takes the user information up to the last @
        "postgresql://alice:secret%40x@db/mlflow",  # percent-encoded
    ],
)
def test_every_scheme_and_case_is_masked(uri: str) -> None:
    message = redact(f"MLflow at {redact(uri)} did not take the runs")
    assert "se" not in message.replace("the runs", "") and "alice" not in message and "***@" in message
    for shown in (redact(uri), without_credentials(uri)):
        assert "cret" not in shown and "alice" not in shown
    # a driver's own message repeats the URI, or only its password, inside other text: the URI in use clears it
    password = uri.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
    echoed = f"connection to {uri} failed: password '{password}' ({unquote(password)}) rejected"
    assert "cret" not in redact(echoed, uri) and "alice" not in redact(echoed, uri)


def test_a_uri_without_credentials_is_left_alone() -> None:
    assert redact("sqlite:////work/mlflow.db and https://mlflow.example.org/") == (
        "sqlite:////work/mlflow.db and https://mlflow.example.org/"
    )


def test_printed_links_drop_credentials() -> None:
    assert ui_url("HTTPS://alice:secret@mlflow.example.org/", "3").startswith("HTTPS://mlflow.example.org/#/")


def test_secret_values_from_the_environment_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2")
    assert redact("auth failed for hunter2") == "auth failed for ***"


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://db/mlflow?user=alice&password=hunter22",
        "mssql+pyodbc://h/db?driver=x;PWD=hunter22",
        "https://store.example.org/mlflow?sig=hunter22&api_key=hunter22",
    ],
)
def test_secrets_in_the_query_string_are_masked(uri: str) -> None:
    for shown in (redact(uri), redact(f"MLflow at {uri} failed"), without_credentials(uri)):
        assert "hunter22" not in shown and "=***" in shown


def test_the_token_and_the_uri_in_the_environment_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-123456")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://bob:pa ss/w0rd@mlflow.example.org")
    message = redact("401 for Bearer tok-123456 from bob:pa ss/w0rd, password pa ss/w0rd")
    assert "tok-123456" not in message and "pa ss/w0rd" not in message


def test_short_secrets_do_not_blank_the_message() -> None:
    """A one-letter password cannot be masked verbatim in text; it still goes from the URI itself."""
    assert redact("https://a:p@host.example.org") == "https://***@host.example.org"
    assert "compare" in redact("compare at https://a:p@host.example.org", "https://a:p@host.example.org")
