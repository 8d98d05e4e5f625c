"""Credentials in any tracking URI MLflow accepts are masked wherever a message, log or command line shows it."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from carbon_budget.publish.redact import redact, without_credentials
from carbon_budget.publish.runs import ui_url


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
        "postgresql://alice:se?cret@127.0.0.1:9/mlflow",  # SQLAlchemy takes `?` and `#` raw in a password too
        "postgresql://alice:se#cret@db:5432/mlflow?sslmode=require",
        "mysql+pymysql://alice:se?c#t/ x&cret@h:3306/db",
        "postgresql://alice:se?cret@/mlflow?host=/var/run/postgresql",  # no host: a unix socket
        "postgresql://alice:se?cret@[::1]:5432/mlflow",
        "https://alice:se?cret@mlflow.example.org/?owner=bob@example.org",  # an `@` after it cannot shorten the mask
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


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://alice:Kx7?mR4nQ@127.0.0.1:9/mlflow", "postgresql://127.0.0.1:9/mlflow"),
        ("postgresql://alice:Kx7#mR4nQ@db/mlflow?sslmode=require", "postgresql://db/mlflow?sslmode=require"),
        ("https://mlflow.example.org/users/@me", "https://mlflow.example.org/users/@me"),  # no user information
        ("https://mlflow.example.org/p?owner=bob@example.org", "https://mlflow.example.org/p?owner=bob@example.org"),
    ],
)
def test_the_user_information_ends_at_the_last_at_a_host_follows(uri: str, shown: str) -> None:
    """A `?` or `#` in a password does not end the user information; an `@` in a path or query after a host does
    not start one (no parser takes a `/` in a user name)."""
    assert without_credentials(uri) == shown
    assert redact(f"MLflow at {uri}: refused") == f"MLflow at {redact(uri)}: refused"


def test_secret_looking_variables_are_masked_wherever_their_values_appear(monkeypatch: pytest.MonkeyPatch) -> None:
    """As CI systems mask secrets: DVC's shell has expanded `$HF_TOKEN` in a command before anything sees it."""
    monkeypatch.setenv("HF_TOKEN", "hf_Wm5PRIVATEq2")
    monkeypatch.setenv("PGPASSWORD", "pg-pass-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws/secret+key")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/home/u/gcp.json")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # its name holds TOKEN, its value is an ordinary word
    monkeypatch.setenv("MY_API_KEY", "abc")  # too short to mask verbatim without blanking ordinary text
    text = "--token hf_Wm5PRIVATEq2 pg-pass-1 aws/secret+key (aws%2Fsecret%2Bkey) /home/u/gcp.json --shuffle false abc"
    assert redact(text) == "--token *** *** *** (***) *** --shuffle false abc"


def test_the_tracking_uri_in_the_environment_is_masked_in_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://alice:Kx7?mR4nQ@127.0.0.1:9/mlflow")
    assert redact("train.py --password=Kx7?mR4nQ") == "train.py --password=***"
