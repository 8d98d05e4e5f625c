"""Credentials in any tracking URI MLflow accepts are masked wherever a message, log or command line shows it."""

from __future__ import annotations

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
    ],
)
def test_every_scheme_and_case_is_masked(uri: str) -> None:
    message = redact(f"MLflow at {uri} did not take the runs")
    assert "secret" not in message and "alice" not in message and "***@" in message
    assert "secret" not in without_credentials(uri) and "alice" not in without_credentials(uri)


def test_a_uri_without_credentials_is_left_alone() -> None:
    assert redact("sqlite:////work/mlflow.db and https://mlflow.example.org/") == (
        "sqlite:////work/mlflow.db and https://mlflow.example.org/"
    )


def test_printed_links_drop_credentials() -> None:
    assert ui_url("HTTPS://alice:secret@mlflow.example.org/", "3").startswith("HTTPS://mlflow.example.org/#/")


def test_secret_values_from_the_environment_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2")
    assert redact("auth failed for hunter2") == "auth failed for ***"
