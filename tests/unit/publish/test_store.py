"""A new sqlite store starts from the empty one MLflow made earlier on this machine, and is MLflow's own still."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import mlflow
import pytest

from carbon_budget.publish import runs, store

pytestmark = pytest.mark.integration


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CARBON_BUDGET_CACHE_DIR", str(tmp_path / "cache"))
    return store.template_path(mlflow.__version__)


def tables(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as connection:
        return sorted(connection.execute("select name, sql from sqlite_master where sql is not null").fetchall())


def test_the_first_store_is_kept_empty_and_the_next_starts_from_it(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "one/mlflow.db"
    client = runs.open_client(f"sqlite:///{first}")
    assert cache.is_file() and tables(cache) == tables(first)
    client.create_experiment("after")  # logged after the copy: the template stays empty
    with sqlite3.connect(cache) as connection:
        assert connection.execute("select name from experiments").fetchall() == [("Default",)]

    with sqlite3.connect(cache) as connection:  # a mark MLflow ignores: the next store is a copy if it carries it
        connection.execute("pragma user_version = 4242")
    (tmp_path / "two").mkdir()
    monkeypatch.chdir(tmp_path / "two")
    second = tmp_path / "two/mlflow.db"
    client = runs.open_client(f"sqlite:///{second}")
    with sqlite3.connect(second) as connection:
        assert connection.execute("pragma user_version").fetchone() == (4242,)
    assert tables(second) == tables(first)
    default = client.get_experiment("0")
    assert default.artifact_location == str(tmp_path / "two/mlruns/0")  # where MLflow would have put it here
    run = client.create_run(client.create_experiment("works"))
    client.log_metric(run.info.run_id, "energy_kwh", 1e-5)
    assert client.get_run(run.info.run_id).data.metrics == {"energy_kwh": 1e-5}


def test_a_template_mlflow_refuses_is_dropped_and_mlflow_creates_the_store(cache: Path, tmp_path: Path) -> None:
    cache.parent.mkdir(parents=True)
    with sqlite3.connect(cache) as connection:  # a sqlite file, but not MLflow's schema
        connection.execute("create table experiments (experiment_id integer, artifact_location text)")
    path = tmp_path / "mlflow.db"
    client = runs.open_client(f"sqlite:///{path}")
    assert client.search_experiments()[0].name == "Default"
    assert ("alembic_version",) in [(name,) for name, _ in tables(path)]
    assert tables(cache) == tables(path)  # replaced by MLflow's own


def test_a_store_that_exists_is_opened_as_it_is(cache: Path, tmp_path: Path) -> None:
    path = tmp_path / "mlflow.db"
    runs.open_client(f"sqlite:///{path}").create_experiment("kept")
    cache.unlink()
    assert [e.name for e in runs.open_client(f"sqlite:///{path}").search_experiments()] == ["kept", "Default"]
    assert not cache.exists()  # only a store MLflow has just created is taken as the template
