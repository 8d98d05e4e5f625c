"""Distributed training: params, the torchrun command, per-node energy, and real 2-process runs on this CPU."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from carbon_budget.errors import MeasurementError, ParamsError
from carbon_budget.records.record import load_record, node_energy
from pipeline import layout
from pipeline.config import DistributedParams, parse_params
from pipeline.distributed import NodeRun, account_nodes, node_count, torchrun_command
from tests.conftest import ROOT, edit_params, run

SAMPLE_RECORD = ROOT / "metrics/emissions/train.json"


def params_with(distributed: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["distributed"].update(distributed)
    return raw


@pytest.mark.parametrize(
    ("distributed", "expected"),
    [
        ({"nprocs": 2}, "unknown key train.distributed.nprocs (allowed here: enabled, nproc_per_node"),
        ({"nproc_per_node": 0}, "train.distributed.nproc_per_node = 0"),
        ({"rdzv_endpoint": "node0"}, "train.distributed.rdzv_endpoint = 'node0'"),
        ({"rdzv_backend": "tcp"}, "train.distributed.rdzv_backend = 'tcp'"),
        ({"nnodes": 2}, "train.distributed.node_figures_dir is required when nnodes > 1"),
    ],
)
def test_bad_distributed_params_are_named(distributed: dict[str, Any], expected: str) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params(params_with(distributed))
    assert expected in str(caught.value)


def test_shipped_default_trains_in_one_process() -> None:
    assert parse_params(params_with({})).train.distributed.enabled is False


def test_one_node_runs_standalone_and_null_settings_are_left_to_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PET_NNODES", raising=False)
    monkeypatch.delenv("PET_RDZV_ENDPOINT", raising=False)
    command = torchrun_command(DistributedParams(enabled=True, nproc_per_node=3), Path("x"))
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", "3", "--standalone"]
    assert command[1:] == [*launcher, "-m", "pipeline.ddp_worker", "x"]
    several = DistributedParams(
        nnodes=2, rdzv_backend="c10d", rdzv_endpoint="node0:29400", rdzv_id="job7", node_figures_dir="/shared"
    )
    flags = torchrun_command(several, Path("x"))
    assert "--standalone" not in flags
    for flag, value in (("--nnodes", "2"), ("--rdzv-endpoint", "node0:29400"), ("--rdzv-id", "job7")):
        assert flags[flags.index(flag) + 1] == value


def test_node_count_falls_back_to_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PET_NNODES", "3")
    assert node_count(DistributedParams(node_figures_dir="/shared")) == 3
    with pytest.raises(ParamsError, match="node_figures_dir is required"):
        node_count(DistributedParams())
    monkeypatch.setenv("PET_NNODES", "1:4")
    with pytest.raises(ParamsError, match="no elastic ranges"):
        node_count(DistributedParams())
    assert node_count(DistributedParams(nnodes=1)) == 1  # params win over the environment


def test_node_zero_adds_up_every_node_and_keeps_each(tmp_path: Path) -> None:
    record = load_record(SAMPLE_RECORD)
    settings = DistributedParams(enabled=True, nnodes=2, node_figures_dir=str(tmp_path / "shared"))
    other = node_energy(record, 1, "node-b", 2, 12.0)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared/tok-node1.json").write_text(json.dumps(other.model_dump(mode="json")))
    record_file = tmp_path / "train.json"
    account_nodes(settings, record, record_file, NodeRun(0, 2, "tok", 11.0, 10.0, None))
    summed = load_record(record_file)
    assert [n.node_rank for n in summed.nodes] == [0, 1]
    assert summed.energy_kwh == pytest.approx(2 * record.energy_kwh)
    assert summed.co2_kg == pytest.approx(2 * record.co2_kg)
    assert summed.nodes[0].cpu_seconds == 11.0 and summed.nodes[1].hostname == "node-b"
    assert summed.figures()["node1.energy_kwh"] == record.energy_kwh
    assert not list((tmp_path / "shared").iterdir())  # read once, then removed


def test_a_missing_node_fails_the_record_instead_of_undercounting(tmp_path: Path) -> None:
    record = load_record(SAMPLE_RECORD)
    settings = DistributedParams(enabled=True, nnodes=2, node_figures_dir=str(tmp_path))
    record_file = tmp_path / "train.json"
    with pytest.raises(MeasurementError, match=r"no energy figures from node\(s\) \[1\]"):
        account_nodes(settings, record, record_file, NodeRun(0, 2, "tok", 11.0, 10.0, None), wait_s=0.2)
    assert load_record(record_file).status == "failed"


def test_other_nodes_leave_their_figures_for_node_zero(tmp_path: Path) -> None:
    record = load_record(SAMPLE_RECORD)
    settings = DistributedParams(enabled=True, nnodes=2, node_figures_dir=str(tmp_path / "shared"))
    account_nodes(settings, record, tmp_path / "train.json", NodeRun(1, 2, "tok", 11.0, 10.0, None))
    left = json.loads((tmp_path / "shared/tok-node1.json").read_text())
    assert left["node_rank"] == 1 and left["energy_kwh"] == record.energy_kwh


def test_ordinary_records_are_unchanged_by_the_nodes_field() -> None:
    assert "nodes" not in load_record(SAMPLE_RECORD).model_dump(mode="json")


def free_port() -> int:
    """A TCP port nobody listens on now, for a rendezvous of our own (a fixed one could collide with other runs)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def watts_per_core(cache: Path) -> float | None:
    """The TDP per thread codecarbon settled on for its load estimate on this machine (from its cached plan)."""
    for plan_file in cache.glob("hardware-plan-*.json"):
        for entry in json.loads(plan_file.read_text()):
            if entry["key"]["tracking_mode"] != "process":
                continue
            cpu = next(s for s in entry["plan"]["hardware_specs"] if s["kind"] == "cpu")
            return float(cpu["tdp"]) / entry["plan"]["conf"]["cpu_count"]
    return None


@pytest.mark.integration
def test_two_processes_train_and_the_node_is_counted_once(
    project: Path, tool_env: dict[str, str], cache_dir: Path
) -> None:
    edit_params(project, train={"epochs": 10, "distributed": {"enabled": True, "nproc_per_node": 2}})
    result = run(["dvc", "repro"], project, tool_env)
    assert "gate: PASSED" in result.stdout
    assert json.loads((project / "metrics/evaluate.json").read_text())["test_accuracy"] >= 0.9

    record = json.loads((project / "metrics/emissions/train.json").read_text())
    assert record["status"] == "completed" and record["tags"]["stopped_by"] == "completed"
    (node,) = record["nodes"]  # one machine: one entry, however many processes trained on it
    assert node["node_rank"] == 0 and node["processes"] == 2
    assert node["energy_kwh"] == record["energy_kwh"] > 0  # the total is the node's figure, not two copies
    assert node["cpu_seconds"] >= record["extra_metrics"]["workers_cpu_s"] > 0  # both workers in the node's CPU
    per_core = watts_per_core(cache_dir)
    if record["methods"]["cpu"] == "estimated:cpu_time_x_tdp" and per_core:
        charged_s = record["cpu_energy_kwh"] * 3.6e6 / per_core
        # charged for the node's whole process tree (workers and torchrun), once: not less, and never double
        assert record["extra_metrics"]["workers_cpu_s"] < charged_s
        assert charged_s == pytest.approx(node["cpu_seconds"], rel=0.1)
    assert not list((project / ".carbon-budget/distributed").iterdir())  # the exchange files are cleaned up

    with sqlite3.connect(project / "mlflow.db") as con:
        train_runs = con.execute("select count(*) from runs where name = 'train'").fetchone()[0]
    assert train_runs == 1  # published once, by the gate on node 0


@pytest.mark.integration
def test_two_nodes_on_one_machine_add_up_into_node_zero_record(
    project: Path, tool_env: dict[str, str], tmp_path: Path
) -> None:
    """Two copies of the project play two nodes of one process each, meeting over a local rendezvous."""
    shared = tmp_path / "shared"
    run(["dvc", "repro", "preprocess"], project, tool_env)
    distributed = {
        "enabled": True,
        "nproc_per_node": 1,
        "nnodes": 2,
        "rdzv_backend": "c10d",
        "rdzv_endpoint": f"127.0.0.1:{free_port()}",
        "rdzv_id": "two-nodes",
        "node_figures_dir": str(shared),
    }
    edit_params(project, train={"epochs": 3, "distributed": distributed})
    second = tmp_path / "second-node"
    # a background worker may still be writing the first node's MLflow store: its transient sqlite journal can vanish
    # mid-copy, and the second node has a store of its own anyway
    shutil.copytree(project, second, ignore=shutil.ignore_patterns(".dvc", ".git", "mlflow.db*", ".carbon-budget"))
    env = {**tool_env, "CARBON_BUDGET_WORKER": "off"}
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "stages.train"], cwd=where, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for where in (project, second)
    ]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    records = [json.loads((where / "metrics/emissions/train.json").read_text()) for where in (project, second)]
    zero = next(r for r in records if len(r["nodes"]) == 2)  # whichever copy held global rank 0
    other = next(r for r in records if r is not zero)
    assert [n["node_rank"] for n in zero["nodes"]] == [0, 1]
    assert zero["energy_kwh"] == pytest.approx(sum(n["energy_kwh"] for n in zero["nodes"]))
    assert zero["nodes"][1]["energy_kwh"] == pytest.approx(other["energy_kwh"])
    assert not list(shared.iterdir())


@pytest.mark.integration
def test_budget_forecast_stops_every_process(project: Path, tool_env: dict[str, str]) -> None:
    edit_params(
        project,
        # long enough that two forecasts in a row (decided on time, after warm-up) come well before the end even
        # on a loaded host: at 300 epochs one fresh-clone run finished first and was never stopped
        train={"epochs": 1500, "distributed": {"enabled": True, "nproc_per_node": 2}},
        budget={"stages": {"train": {"energy_kwh": 1e-6}}},
    )
    failed = run(["dvc", "repro", "train"], project, {**tool_env, "CARBON_BUDGET_WORKER": "off"}, check=False)
    assert failed.returncode != 0 and "budget 1e-06 kWh" in failed.stderr
    record = json.loads((project / "metrics/emissions/train.json").read_text())
    assert record["status"] == "aborted" and record["tags"]["stopped_by"] == "budget_forecast"
    assert record["extra_metrics"]["epochs_run"] < 1500 and record["nodes"][0]["energy_kwh"] == record["energy_kwh"]
    assert not (project / layout.MODEL).exists()  # an aborted model is not passed on as trained
