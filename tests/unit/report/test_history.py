"""The base branch's executions in a real MLflow store (sqlite) as the report's base and noise band."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from carbon_budget.publish.runs import open_client
from carbon_budget.publish.tags import TAG_FINGERPRINT, TAG_RECORD
from carbon_budget.records.fingerprint import fingerprint_id
from carbon_budget.report.history import LEAST, History, base_history
from tests.conftest import record

pytestmark = pytest.mark.integration


def head_record(cpu_model: str = "cpu") -> dict[str, Any]:
    found = json.loads(record("train", 1.0e-5).model_dump_json())
    found["hardware"]["cpu_model"] = cpu_model
    return found


def execution(client: Any, experiment_id: str, branch: str, energy_kwh: float, measured_like: dict[str, Any]) -> None:
    """What a published execution leaves: a parent with its branch, a child per stage with its fingerprint."""
    parent = client.create_run(experiment_id, tags={"git.branch": branch})
    child = client.create_run(
        experiment_id,
        run_name="train",
        tags={
            "mlflow.parentRunId": parent.info.run_id,
            "carbon_budget.stage": "train",
            TAG_RECORD: f"record-{energy_kwh}",
            TAG_FINGERPRINT: fingerprint_id(measured_like),
        },
    )
    for key, value in {"energy_kwh": energy_kwh, "co2_kg": energy_kwh * 0.4, "duration_s": 2.0, "cpu_s": 3.0}.items():
        client.log_metric(child.info.run_id, key, value)


def test_three_executions_of_the_base_branch_measured_alike_give_the_base_and_its_band(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    head = {"train": head_record()}
    assert base_history(uri, "team", "main", head, 10.0) == f"no MLflow store at {uri}"
    client = open_client(uri)
    experiment_id = client.create_experiment("team")
    for energy in (1.0e-5, 1.3e-5):
        execution(client, experiment_id, "main", energy, head["train"])
    execution(client, experiment_id, "feature", 0.9e-5, head["train"])  # another branch: not the base
    execution(client, experiment_id, "main", 0.5e-5, head_record("Other CPU"))  # measured otherwise
    reason = base_history(uri, "team", "main", head, 10.0)
    assert (
        reason == f"MLflow holds 2 execution(s) of branch 'main' measured like this revision (at least {LEAST} needed)"
    )

    execution(client, experiment_id, "main", 1.1e-5, head["train"])
    found = base_history(uri, "team", "main", head, 10.0)
    assert isinstance(found, History)
    assert found.records["train"]["energy_kwh"] == pytest.approx(1.1e-5)  # the median of 1.0, 1.1 and 1.3
    assert found.records["train"]["extra_metrics"] == {"cpu_s": 3.0}
    # one more run may land within t(2) * s * sqrt(1 + 1/3) of their median, at 99 %: three runs say little
    band = 9.925 * statistics.stdev([1.0, 1.1, 1.3]) * math.sqrt(4 / 3) / 1.1 * 100
    assert found.noise.band("train.energy_kwh") == pytest.approx(band, rel=1e-3)
    assert found.noise.band("total.energy_kwh") == pytest.approx(band, rel=1e-3)  # the one stage's share: all
    assert found.noise.band("train.duration_s") == 10.0  # no spread: never under the floor
    assert "branch 'main'" in found.noise.source and "train 3" in found.noise.source
