"""End to end: real `dvc repro` in a temporary git repo, real codecarbon, real MLflow sqlite store."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml

from carbon_budget.gate.footprint import reserved_s
from carbon_budget.layout import ITSELF, ITSELF_RECORD
from carbon_budget.records.lockfile import directory_md5
from tests.conftest import edit_params, mlflow_runs, run, stages_run

pytestmark = pytest.mark.integration

PRODUCING = ("preprocess", "train", "evaluate", "export")


def test_repro_measures_logs_and_gates(project: Path, tool_env: dict[str, str]) -> None:
    first = run(["dvc", "repro"], project, tool_env)
    assert "gate: PASSED" in first.stdout

    for stage in (*PRODUCING, "gate"):
        record = json.loads((project / f"metrics/emissions/{stage}.json").read_text())
        assert record["status"] == "completed"
        assert record["energy_kwh"] > 0, stage
        assert record["methods"]["cpu"].startswith(("estimated:", "measured:"))
        assert record["hardware"]["cpu_tdp_source"] and record["tags"]["charged_from"] == "process start"
    assert (project / "models/trained/model.pt").is_file()
    assert (project / "models/export/model.torchscript.pt").is_file()
    evaluate = json.loads((project / "metrics/evaluate.json").read_text())
    assert 0.5 < evaluate["test_accuracy"] <= 1
    gate = json.loads((project / "metrics/gate.json").read_text())
    assert gate["passed"] is True and gate["energy_kwh"] > 0
    # DVC's own process, read by the gate from its ancestor: shown apart, in no stage's record or total
    assert gate["dvc_own_cpu_s"] > 0 and "dvc itself: " in first.stdout
    assert "dvc itself" not in run(["carbon-budget", "gate"], project, tool_env).stdout  # not under DVC: none
    # Directory inputs are hashed as DVC hashes them (export reads models/trained as a folder).
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    folders = {d["path"]: d["md5"] for e in lock.values() for d in e.get("deps", []) if d["md5"].endswith(".dir")}
    assert "models/trained" in folders
    assert all(directory_md5(project / path) == md5 for path, md5 in folders.items())

    parents, children, child_keys = mlflow_runs(project / "mlflow.db")
    assert len(parents) == 1 and len(children) == 5
    assert {"energy_kwh", "co2_kg", "energy_wh", "duration_s", "test_accuracy"} <= child_keys
    # The deployed model follows the runs (the worker logs it after the gate has its answer), then the outbox empties.
    outbox = project / ".carbon-budget/outbox"
    deadline = time.time() + 60
    while outbox.exists() and any(outbox.iterdir()) and time.time() < deadline:
        time.sleep(0.5)
    assert not outbox.exists() or not any(outbox.iterdir())
    with sqlite3.connect(project / "mlflow.db") as con:
        assert con.execute("select count(*) from logged_models").fetchone()[0] == 1
        (model_id,) = con.execute("select model_id from logged_models").fetchone()
    # It is the deployed file as it is, served as a pyfunc: it predicts what the file predicts.
    example = json.loads((project / "models/export/input_example.json").read_text())["input"]
    batch = np.asarray(example, dtype=np.float32)
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        served = mlflow.pyfunc.load_model(f"models:/{model_id}").predict(batch)
    finally:
        mlflow.set_tracking_uri(before)
    direct = torch.jit.load(str(project / "models/export/model.torchscript.pt"))(torch.as_tensor(batch))
    np.testing.assert_allclose(served, direct.detach().numpy(), rtol=1e-5, atol=1e-6)
    # The worker's own cost is recorded like a stage's, and shown on the execution's parent run.
    itself_file = project / ".carbon-budget/itself.json"
    while not itself_file.exists() and time.time() < deadline:
        time.sleep(0.5)
    itself = json.loads(itself_file.read_text())
    assert itself["stage"] == "carbon-budget itself" and itself["status"] == "completed"
    assert itself["extra_metrics"]["cpu_s"] > 0 and itself["energy_kwh"] > 0 and "worker" in itself["tags"]["covers"]
    gate_record = json.loads((project / "metrics/emissions/gate.json").read_text())  # in no total of its own run
    assert itself["extra_metrics"]["tool_stages_cpu_s"] == pytest.approx(gate_record["extra_metrics"]["cpu_s"])
    assert itself["tags"]["covers"].startswith("the gate stage (")
    with sqlite3.connect(project / "mlflow.db") as con:
        logged = con.execute("select value from metrics where key = 'carbon_budget_itself.energy_kwh'").fetchall()
    assert logged == [(pytest.approx(itself["energy_kwh"]),)]

    # Nothing changed: nothing reruns, nothing new is logged.
    second = run(["dvc", "repro"], project, tool_env)
    assert stages_run(second.stdout) == []
    assert len(mlflow_runs(project / "mlflow.db")[0]) == 1

    # The CLI gate agrees with the stage, from files alone.
    assert "PASSED" in run(["carbon-budget", "gate"], project, tool_env).stdout

    # A budget below the measured figure fails `dvc repro`, naming the budget and both numbers.
    edit_params(project, budget={"energy_kwh": 1e-12})
    failed = run(["dvc", "repro"], project, tool_env, check=False)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "budget.energy_kwh" in output and "kWh > budget 1e-12 kWh" in output
    assert "Traceback" not in output
    # The next gate counts the tool's cost it knows of: the line is in its table, its document and its total.
    assert "carbon-budget itself:" in output
    gate = json.loads((project / "metrics/gate.json").read_text())
    assert gate["stages"]["carbon-budget itself"]["energy_kwh"] == pytest.approx(itself["energy_kwh"])
    assert gate["energy_kwh"] == pytest.approx(sum(s["energy_kwh"] for s in gate["stages"].values()), rel=1e-12)
    parents, _, _ = mlflow_runs(project / "mlflow.db")
    assert len(parents) == 2  # the failed verdict is in MLflow too, with only the gate as a new child

    # Each budget on the model's use fails the gate too, naming itself (the CLI gate reads today's params.yaml).
    over = {"inference_wh_per_1k": 1e-15, "inference_co2_g_per_1k": 1e-15, "lifetime_co2_kg": 1e-12}
    over |= {"sci_g_per_run": 1e-9, "sci_g_per_1k_predictions": 1e-15}
    edit_params(project, budget={"energy_kwh": 1.0, **over})
    verdict = run(["carbon-budget", "gate"], project, tool_env, check=False)
    assert verdict.returncode == 1
    for key in over:
        assert f"(params.yaml budget.{key})" in verdict.stdout + verdict.stderr, key


def test_gate_fails_closed_on_a_broken_or_stale_record(project: Path, tool_env: dict[str, str]) -> None:
    # Without the background worker the gate draws and publishes in its own process, with the same result.
    run(["dvc", "repro"], project, {**tool_env, "CARBON_BUDGET_WORKER": "off"})
    parents, children, _ = mlflow_runs(project / "mlflow.db")
    assert len(parents) == 1 and len(children) == 5
    assert (project / "plots/energy_per_stage.svg").stat().st_size > 1000
    record = project / "metrics/emissions/train.json"
    original = record.read_text()

    record.write_text(original[: len(original) // 2])
    broken = run(["carbon-budget", "gate"], project, tool_env, check=False)
    assert broken.returncode == 1 and "train.json" in broken.stderr and "truncated" in broken.stderr

    record.unlink()
    missing = run(["carbon-budget", "gate"], project, tool_env, check=False)
    assert missing.returncode == 1 and "missing" in missing.stderr

    record.write_text(original)
    (project / "models/trained/extra.pt").write_bytes(b"a file export never saw")  # only the folder's hash shows it
    grown = run(["carbon-budget", "gate"], project, tool_env, check=False)
    assert grown.returncode == 1
    assert "export.json: stale record, its directory models/trained has changed" in grown.stderr
    (project / "models/trained/extra.pt").unlink()
    (project / "models/trained/model.pt").write_bytes(b"not the model that was measured")
    stale = run(["carbon-budget", "gate"], project, tool_env, check=False)
    assert stale.returncode == 1 and "stale record" in stale.stderr and "models/trained/model.pt" in stale.stderr


def test_failing_stage_still_writes_its_record(project: Path, tool_env: dict[str, str]) -> None:
    edit_params(project, data={"source": "csv", "path": "missing.csv"})
    failed = run(["dvc", "repro", "preprocess"], project, tool_env, check=False)
    assert failed.returncode != 0
    assert "cannot read data.path" in failed.stderr and "Traceback" not in failed.stderr
    record = json.loads((project / "metrics/emissions/preprocess.json").read_text())
    assert record["status"] == "failed" and record["energy_kwh"] >= 0


def test_totals_reconcile_everywhere_they_are_shown(project: Path, tool_env: dict[str, str]) -> None:
    """The records' sum, metrics/gate.json, the MLflow parent run, the report and the model card's grams agree,
    each to the rounding it shows."""
    in_process = {**tool_env, "CARBON_BUDGET_WORKER": "off"}  # published before `dvc repro` returns
    run(["dvc", "repro"], project, in_process)
    # a second execution's gate counts the tool's own line of the first, so it is in every total below (the
    # second's own publishing then writes its line for the next one)
    first_itself = json.loads((project / ITSELF_RECORD).read_text())
    shown = run(["dvc", "repro", "--single-item", "--force", "gate"], project, in_process).stdout
    gate = json.loads((project / "metrics/gate.json").read_text())
    records = {
        s: first_itself if s == ITSELF else json.loads((project / f"metrics/emissions/{s}.json").read_text())
        for s in gate["stages"]
    }
    # every stage that made the model, and the tool's own line; the gate's own record is folded into the latter
    assert set(records) == {*PRODUCING, ITSELF}
    for name, record in records.items():
        parts = record["cpu_energy_kwh"] + record["gpu_energy_kwh"] + record["ram_energy_kwh"]
        assert parts == pytest.approx(record["energy_kwh"], rel=1e-9), name
        assert record["co2_kg"] == pytest.approx(record["energy_kwh"] * record["carbon_intensity_g_per_kwh"] / 1000)
        assert gate["stages"][name]["energy_kwh"] == record["energy_kwh"]
    total = sum(r["energy_kwh"] for r in records.values())
    assert gate["energy_kwh"] == pytest.approx(total, rel=1e-12)
    assert gate["co2_kg"] == pytest.approx(sum(r["co2_kg"] for r in records.values()), rel=1e-12)
    # the table shows the same total at its own rounding, and the tool's line apart
    assert f"{total:.4g} kWh" in next(line for line in shown.splitlines() if "budget.energy_kwh" in line)
    assert f"{ITSELF}: {records[ITSELF]['energy_kwh'] * 1000:.4g} Wh" in shown

    # SCI per training run: E is the gate's total, E x I its CO2, and M the embodied share over its time
    sci, inference, lifetime = gate["sci"]["training"], gate["sci"]["inference"], gate["lifetime"]
    assert sci["energy_kwh"] == gate["energy_kwh"]
    assert sci["operational_g"] == pytest.approx(gate["co2_kg"] * 1000, rel=1e-12)
    # T is the wall-clock the machine was held (the union of the lines' intervals), not their summed durations
    reserved = sci["embodied"]["time_reserved_s"]
    assert reserved == pytest.approx(reserved_s(records), rel=1e-12)
    assert reserved <= gate["duration_s"] * (1 + 1e-12)  # the union never exceeds the sum (float rounding aside)
    assert sci["sci_g"] == pytest.approx(sci["operational_g"] + sci["embodied_g"], rel=1e-12)
    measured = json.loads((project / "metrics/export.json").read_text())["deploy"]["inference"]
    assert inference["energy_kwh"] == measured["energy_per_1k_predictions_kwh"]
    # read from export's own meter over the predictions: part of what export's record paid for, not latency
    assert 0 < measured["measured_energy_kwh"] < records["export"]["energy_kwh"]
    assert measured["method"].startswith("measured under the export stage's meter")
    assert lifetime["training_co2_kg"] == gate["co2_kg"]
    assert lifetime["co2_kg"] == pytest.approx(lifetime["training_co2_kg"] + lifetime["inference_co2_kg"])

    with sqlite3.connect(project / "mlflow.db") as con:
        ((latest,),) = con.execute(  # the second execution's parent run: the one showing the tool's line
            "select run_uuid from metrics where key = ?", (f"{ITSELF}.energy_kwh",)
        ).fetchall()
        parent = dict(con.execute("select key, value from metrics where run_uuid = ?", (latest,)).fetchall())
    assert parent["energy_kwh"] == pytest.approx(total, rel=1e-12)
    assert parent["sci.training.sci_g"] == pytest.approx(sci["sci_g"], rel=1e-12)
    assert parent["sci.inference.sci_g"] == pytest.approx(inference["sci_g"], rel=1e-12)
    assert parent["lifetime.co2_kg"] == pytest.approx(lifetime["co2_kg"], rel=1e-12)

    report = json.loads(run(["carbon-budget", "report", "--format", "json"], project, tool_env).stdout)
    assert report["totals"]["energy_kwh"]["current"] == pytest.approx(total, rel=1e-12)
    assert report["totals"]["sci_g_per_run"]["current"] == pytest.approx(sci["sci_g"], rel=1e-12)
    assert report["totals"]["sci_g_per_1k_predictions"]["current"] == pytest.approx(inference["sci_g"], rel=1e-12)

    card = (project / "models/export/README.md").read_text()
    grams = yaml.safe_load(card.split("---\n")[1])["co2_eq_emissions"]["emissions"]
    before_export = ("preprocess", "train", "evaluate")
    assert grams == round(sum(records[s]["co2_kg"] for s in before_export) * 1000, 6)
    assert "At export time: within budget so far" in card  # the gate passed too
    # the card's SCI: the same inference score, and the training run of the stages before export
    assert f"| 1,000 predictions | {inference['sci_g']:.4g} | {inference['energy_kwh']:.4g} |" in card
    energy_before = sum(records[s]["energy_kwh"] for s in before_export)
    row = next(line for line in card.splitlines() if line.startswith("| one training run |"))
    assert row.split(" | ")[2] == f"{energy_before:.4g}"
