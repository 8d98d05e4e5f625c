"""The gate on files alone: it judges what the budget asks for, in this pipeline or any DVC project."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from carbon_budget.gate.accounting import account
from carbon_budget.gate.evidence import judge_file
from carbon_budget.records.dvcyaml import upstream_stages
from carbon_budget.records.record import Methods, file_md5, save_record
from tests.conftest import BIN, foreign_project, record, run


def sort_lock(out: str, out_md5: str, record_file: Path) -> str:
    """The dvc.lock `dvc repro` leaves for the foreign project's sort stage: its output and its record, hashed."""
    return (
        f"schema: '2.0'\nstages:\n  sort:\n    cmd: sort in.txt -o {out}\n    outs:\n"
        f"    - path: {out}\n      md5: {out_md5}\n"
        f"    - path: metrics/emissions/sort.json\n      md5: {file_md5(record_file)}\n"
    )


def test_carbon_gate_is_preferred_to_a_stage_merely_named_gate(tmp_path: Path) -> None:
    assert account(foreign_project(tmp_path, ""), {}).recorded == ["sort"]


def test_no_model_no_model_checks(tmp_path: Path) -> None:
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n")
    verdict, evidence = judge_file(root / "params.yaml", root)
    assert verdict.passed and evidence.model_size_mb is None and evidence.accuracy is None


def test_model_budgets_set_without_their_metrics_fail_closed(tmp_path: Path) -> None:
    root = foreign_project(
        tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n  model_size_mb: 1\n  min_accuracy: 0.9\n"
    )
    verdict, _ = judge_file(root / "params.yaml", root)
    failures = "\n".join(verdict.failures())
    assert not verdict.passed and "metrics/export.json: missing" in failures


def test_accuracy_budget_without_the_deployed_artifacts_accuracy_fails_closed(tmp_path: Path) -> None:
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n  min_accuracy: 0.9\n")
    (root / "metrics" / "export.json").write_text('{"deploy": {"path": "model.bin"}}')
    (root / "model.bin").write_bytes(b"x")
    verdict, _ = judge_file(root / "params.yaml", root)
    assert not verdict.passed and "metrics/export.json: `deploy.accuracy` is missing" in verdict.failures()


def test_over_budget_names_the_key(tmp_path: Path) -> None:
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.0001\n  co2_kg: 0.01\n")
    verdict, _ = judge_file(root / "params.yaml", root)
    assert verdict.failures() == [
        f"energy (total): 0.001 kWh > budget 0.0001 kWh ({root / 'params.yaml'} budget.energy_kwh)"
    ]


def test_the_failure_names_the_params_file_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.0001\n  co2_kg: 0.01\n")
    (root / "params.yaml").rename(root / "carbon.yaml")
    monkeypatch.chdir(root)
    verdict, _ = judge_file(Path("carbon.yaml"), root)
    assert verdict.failures() == ["energy (total): 0.001 kWh > budget 0.0001 kWh (carbon.yaml budget.energy_kwh)"]


def test_foreach_stages_that_write_records_are_owed_by_params(tmp_path: Path) -> None:
    stages = {
        "train": {"cmd": "x", "outs": ["model.pt", "metrics/emissions/train.json"]},
        "distill": {
            "foreach": "${distill.students}",
            "do": {"cmd": "d ${key}", "deps": ["model.pt"], "outs": ["metrics/emissions/distill@${key}.json"]},
        },
        "sweep": {"foreach": [1, 2], "do": {"cmd": "s ${item}", "outs": ["metrics/emissions/sweep@${item}.json"]}},
        "noted": {"foreach": ["a"], "do": {"cmd": "n", "outs": ["elsewhere/${item}.json"]}},
        "gate": {"cmd": "g", "deps": ["metrics/emissions/train.json"]},
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"distill": {"students": {"small": {}, "tiny": {}}}}))
    owed = account(tmp_path, {})
    assert owed.recorded == ["train", "distill@small", "distill@tiny", "sweep@1", "sweep@2"]
    assert owed.unmeasured == ["noted@a"]  # generated, writes no record: named, never silently left out
    (tmp_path / "params.yaml").write_text("distill: {students: {}}\n")
    assert account(tmp_path, {"noted@a": "writes a note"}).recorded == ["train", "sweep@1", "sweep@2"]


MATRIX_AND_VARS = """\
vars:
  - sizes: [s, m]
  - extra.yaml
stages:
  grid:
    matrix:
      lr: ${lrs}
      size: ${sizes}
    cmd: fit ${item.lr} ${item.size}
    outs: ["metrics/emissions/grid@${key}.json"]
  per_file:
    foreach: ${files}
    do:
      cmd: use ${item.name}
      outs: ["metrics/emissions/per_file@${key}.json"]
  unwrapped:
    matrix: {seed: [1, 2]}
    cmd: seed ${item.seed}
  gate:
    cmd: g
"""


def test_matrix_and_vars_stages_are_named_as_dvc_names_them(tmp_path: Path, tool_env: dict[str, str]) -> None:
    (tmp_path / "dvc.yaml").write_text(MATRIX_AND_VARS)
    (tmp_path / "params.yaml").write_text("lrs: [0.1, 1e-3]\n")
    (tmp_path / "extra.yaml").write_text("files: {a: {name: x}, b: {name: y}}\n")
    owed = account(tmp_path, {"unwrapped@1": "a seed", "gone": "removed since"})
    expected = ["grid@0.1-s", "grid@0.1-m", "grid@0.001-s", "grid@0.001-m", "per_file@a", "per_file@b"]
    assert owed.recorded == expected
    assert owed.exempt == {"unwrapped@1": "a seed"} and owed.unmeasured == ["unwrapped@2"]
    assert owed.unknown_exempt == ["gone"]
    # the names DVC itself gives them
    run(["git", "init", "-q"], tmp_path, tool_env)
    run(["dvc", "init", "-q"], tmp_path, tool_env)
    listed = run(["dvc", "stage", "list", "--name-only"], tmp_path, tool_env).stdout.split()
    assert sorted(listed) == sorted([*expected, "unwrapped@1", "unwrapped@2", "gate"])


def test_upstream_stages_follow_deps_to_their_producers() -> None:
    stages = {
        "prepare": {"cmd": "p", "outs": ["data/x.csv"]},
        "features": {"cmd": "f", "deps": ["data"], "outs": ["features.npz"]},  # a folder holding an output
        "other": {"cmd": "o", "outs": ["unrelated.txt"]},
        "fit": {"cmd": "t", "deps": ["features.npz", "fit.py"], "outs": ["model.pt"]},
    }
    assert upstream_stages(stages, "fit") == ["prepare", "features"]
    assert upstream_stages(stages, "prepare") == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"energy_kwh": 0.0, "cpu_energy_kwh": 0.0, "ram_energy_kwh": 0.0, "co2_kg": 0.0}, "holds no energy at all"),
        ({"methods": Methods(cpu="none", gpu="none", ram="none")}, "every method is `none`"),
        ({"ram_energy_kwh": 0.002}, "do not add up to its total"),
        ({"co2_kg": 1e-9}, "is not its energy x intensity"),
    ],
)
def test_a_completed_record_whose_figures_do_not_hold_fails_closed(
    tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n")
    save_record(root / "metrics/emissions/sort.json", record("sort", 0.001).model_copy(update=change))
    verdict, _ = judge_file(root / "params.yaml", root)
    assert not verdict.passed
    assert any("cannot vouch for stage sort" in f and reason in f for f in verdict.failures()), verdict.failures()


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.json", "metrics/../../x.json"])
def test_a_record_naming_files_outside_the_project_is_invalid(tmp_path: Path, path: str) -> None:
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n")
    data = record("sort", 0.001).model_dump(mode="json")
    for key, value in (("artifacts", [path]), ("metrics_files", [path]), ("outputs", {path: "0" * 32})):
        (root / "metrics/emissions/sort.json").write_text(json.dumps({**data, key: value}))
        verdict, _ = judge_file(root / "params.yaml", root)
        assert any(f"invalid at {key}." in f and "inside the project" in f for f in verdict.failures()), key


def test_a_symlink_out_of_the_project_is_not_published(tmp_path: Path) -> None:
    """A record's paths are relative, but a symlink committed beside it could point anywhere: CI publishing a
    pull request's execution must not log ~/.ssh through it."""
    from carbon_budget.publish.outbox import write_snapshot

    outside = tmp_path / "secret.json"
    outside.write_text('{"key": 42}')
    root = tmp_path / "project"
    (root / "metrics").mkdir(parents=True)
    (root / "metrics/leak.json").symlink_to(outside)
    (root / "metrics/own.json").write_text('{"accuracy": 0.9}')
    listed = ["metrics/leak.json", "metrics/own.json"]
    leaky = record("sort", 0.001).model_copy(update={"artifacts": listed, "metrics_files": listed})
    folder = write_snapshot("e", {}, {"stages": {}}, [leaky], [], root, [], [])
    entry = json.loads((folder / "snapshot.json").read_text())["entries"][0]
    assert [Path(a).name for a in entry["artifacts"]] == ["own.json"] and entry["metrics"] == {"accuracy": 0.9}


@pytest.mark.integration
def test_a_stage_killed_without_warning_leaves_its_energy_and_fails_the_gate(
    tmp_path: Path, tool_env: dict[str, str]
) -> None:
    """SIGKILL (the OOM killer) gives a stage no chance to write its record: its checkpoint stands in for it."""
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n")
    (root / "metrics/emissions/sort.json").unlink()
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 30: pass\n"
    (root / "burn.py").write_text(burn)
    command = [str(BIN / "carbon-budget"), "track", "--stage", "sort", "--", str(BIN / "python"), "burn.py"]
    stage = subprocess.Popen(command, cwd=root, env=tool_env, start_new_session=True)
    record_file = root / "metrics/emissions/sort.json"
    deadline = time.monotonic() + 60
    while not record_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(stage.pid, signal.SIGKILL)
    stage.wait()
    record = json.loads(record_file.read_text())
    assert record["status"] == "running" and record["energy_kwh"] > 0 and record["cpu_energy_kwh"] > 0
    verdict, _ = judge_file(root / "params.yaml", root)
    assert not verdict.passed
    assert any("stage sort never finished" in f and "kWh spent" in f for f in verdict.failures())


def test_a_deployed_artifact_that_is_not_the_one_export_recorded_fails(tmp_path: Path) -> None:
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n  model_size_mb: 1\n")
    (root / "model.onnx").write_bytes(b"the student")
    deploy = {"deploy": {"path": "model.onnx", "md5": file_md5(root / "model.onnx"), "accuracy": 0.9}}
    (root / "metrics" / "export.json").write_text(json.dumps(deploy))
    assert judge_file(root / "params.yaml", root)[0].passed
    (root / "model.onnx").write_bytes(b"the teacher, copied over it")
    verdict, _ = judge_file(root / "params.yaml", root)
    assert not verdict.passed
    assert any(f.startswith("model.onnx: not the artifact metrics/export.json") for f in verdict.failures())


def test_a_record_from_another_run_is_not_the_one_dvc_lock_vouches_for(tmp_path: Path) -> None:
    """Same stage, same params, plausible figures: only dvc.lock's md5 tells the copied record apart."""
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n")
    record_file = root / "metrics/emissions/sort.json"
    (root / "out.txt").write_text("sorted")
    save_record(
        record_file, record("sort", 0.001).model_copy(update={"outputs": {"out.txt": file_md5(root / "out.txt")}})
    )
    lock = sort_lock("out.txt", file_md5(root / "out.txt"), record_file)
    (root / "dvc.lock").write_text(lock)
    assert judge_file(root / "params.yaml", root)[0].passed
    save_record(
        record_file, record("sort", 0.0005).model_copy(update={"outputs": {"out.txt": file_md5(root / "out.txt")}})
    )
    verdict, _ = judge_file(root / "params.yaml", root)
    assert any("not the record dvc.lock has for the last run of sort" in f for f in verdict.failures())
    (root / "out.txt").write_text("sorted again")  # a record whose output is not the one dvc.lock recorded
    save_record(
        record_file, record("sort", 0.001).model_copy(update={"outputs": {"out.txt": file_md5(root / "out.txt")}})
    )
    (root / "dvc.lock").write_text(lock.replace(lock.split("md5: ")[-1].strip(), file_md5(record_file)))
    verdict, _ = judge_file(root / "params.yaml", root)
    assert any("its output out.txt is not the one dvc.lock recorded" in f for f in verdict.failures())


def test_a_deploy_without_its_md5_fails_closed(tmp_path: Path) -> None:
    """Without the md5 export took, nothing ties the file to what export measured: no pass on trust."""
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n  model_size_mb: 1\n")
    (root / "model.onnx").write_bytes(b"a model")
    (root / "metrics" / "export.json").write_text(json.dumps({"deploy": {"path": "model.onnx", "accuracy": 0.9}}))
    verdict, _ = judge_file(root / "params.yaml", root)
    assert not verdict.passed
    assert any(f.startswith("metrics/export.json: `deploy.md5` is missing") for f in verdict.failures())


def test_an_artifact_whose_writer_is_stale_is_named_and_params_count(tmp_path: Path) -> None:
    """The stage that wrote the deployed file measured other params (a student added, removed or switched):
    the gate names the artifact as not today's, besides the stale record."""
    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n  model_size_mb: 1\n")
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "export:\n  model: small\n")
    (root / "model.onnx").write_bytes(b"the student")
    md5 = file_md5(root / "model.onnx")
    (root / "metrics" / "export.json").write_text(json.dumps({"deploy": {"path": "model.onnx", "md5": md5}}))
    written = record("sort", 0.001).model_copy(
        update={"outputs": {"model.onnx": md5}, "params": {"export": {"model": "small"}}}
    )
    save_record(root / "metrics/emissions/sort.json", written)
    assert judge_file(root / "params.yaml", root)[0].passed
    (root / "params.yaml").write_text((root / "params.yaml").read_text().replace("model: small", "model: teacher"))
    failures = judge_file(root / "params.yaml", root)[0].failures()
    assert any(f"measured with other {root / 'params.yaml'} `export` values" in f for f in failures)  # the file given
    assert any(f.startswith("model.onnx: not known to be the model today's params") and "sort" in f for f in failures)


def test_a_doubtful_record_of_the_tools_own_cost_fails_closed(tmp_path: Path) -> None:
    """The tool's own line is counted in the total, so it is held to what any record is held to: doubtful
    figures, a truncated file and a failed status each fail the gate naming it, never drop out of the total."""
    from carbon_budget import layout

    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n")
    itself = record(layout.ITSELF, 0.0001)
    save_record(root / layout.ITSELF_RECORD, itself)
    verdict, evidence = judge_file(root / "params.yaml", root, deciding=True)
    assert verdict.passed and layout.ITSELF in evidence.records
    broken = {
        "doubtful": lambda: save_record(
            root / layout.ITSELF_RECORD, itself.model_copy(update={"co2_kg": itself.co2_kg * 3})
        ),
        "truncated": lambda: (root / layout.ITSELF_RECORD).write_text((root / layout.ITSELF_RECORD).read_text()[:100]),
        "failed": lambda: save_record(
            root / layout.ITSELF_RECORD, itself.model_copy(update={"status": "failed", "error": "killed"})
        ),
    }
    for name, breaking in broken.items():
        save_record(root / layout.ITSELF_RECORD, itself)
        breaking()
        verdict, _ = judge_file(root / "params.yaml", root, deciding=True)
        assert not verdict.passed, name
        assert any(layout.ITSELF in f or "itself" in f for f in verdict.problems), (name, verdict.problems)


def test_every_reading_of_an_execution_counts_the_own_line_its_gate_counted(tmp_path: Path) -> None:
    """The gate that decides an execution counts the newest own line; the tool's publishing then writes a newer
    one, which a later `carbon-budget gate` or the report must not count in its place: one verdict, one total."""
    from carbon_budget import layout

    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n")
    decided, _ = judge_file(root / "params.yaml", root, deciding=True)  # a fresh clone: no own line yet
    save_record(root / layout.ITSELF_RECORD, record(layout.ITSELF, 0.005))  # this execution's publishing
    again, evidence = judge_file(root / "params.yaml", root)
    assert layout.ITSELF not in evidence.records
    assert again.lines[0].measured == decided.lines[0].measured == 0.001
    decided, _ = judge_file(root / "params.yaml", root, deciding=True)  # the next execution's gate counts it
    assert decided.lines[0].measured == pytest.approx(0.006)
    assert judge_file(root / "params.yaml", root)[0].lines[0].measured == pytest.approx(0.006)


def test_the_gate_stages_own_cost_is_folded_into_the_tools_line(tmp_path: Path) -> None:
    """The gate stage's record is in no total of its own execution (the verdict is reached while it runs): the
    tool's line the next gate counts carries it, at the execution's own rates, and names it apart."""
    from carbon_budget import layout
    from carbon_budget.publish.itself import record_itself

    rates = {"hardware": record("x", 0.0).hardware.model_copy(update={"cpu_tdp_w": 20.0})}
    train = record("train", 1e-5).model_copy(update={**rates, "extra_metrics": {"ram_w_per_gb": 0.4}})
    gate = record("gate", 1e-7).model_copy(
        update={**rates, "extra_metrics": {"cpu_s": 0.5, "ram_gb_s": 0.1, "ram_w_per_gb": 0.4}}
    )
    snapshot = {
        "work_dir": str(tmp_path),
        "verdict": {"stages": {"train": {}}},
        "entries": [{"record": r.model_dump(mode="json")} for r in (train, gate)],
    }
    alone = record_itself(
        {**snapshot, "entries": snapshot["entries"][:1]}, None, "", cpu_s=2.0, ram_gb_s=1.0, duration_s=3.0, covers="w"
    )
    folded = record_itself(snapshot, None, "", cpu_s=2.0, ram_gb_s=1.0, duration_s=3.0, covers="w")
    assert alone is not None and folded is not None and not folded.doubts()
    # 20 W over 2 threads is 10 W a CPU-second; 0.4 W per GB
    assert folded.cpu_energy_kwh - alone.cpu_energy_kwh == pytest.approx(0.5 * 10 / 3.6e6)
    assert folded.ram_energy_kwh - alone.ram_energy_kwh == pytest.approx(0.1 * 0.4 / 3.6e6)
    assert folded.extra_metrics["tool_stages_cpu_s"] == 0.5 and folded.extra_metrics["cpu_s"] == 2.5
    assert folded.tags["covers"].startswith("the gate stage (0.50 CPU-s), then w")
    assert json.loads((tmp_path / layout.ITSELF_RECORD).read_text())["energy_kwh"] == folded.energy_kwh


def test_a_record_whose_files_in_a_directory_output_are_not_dvc_locks_fails(tmp_path: Path) -> None:
    """dvc.lock hashes a directory output as one listing; the record's own md5s of the files inside it must make
    that same listing, or the record paid for other files than DVC recorded."""
    from carbon_budget.records.lockfile import directory_md5

    root = foreign_project(tmp_path, "budget:\n  energy_kwh: 0.01\n  co2_kg: 0.01\n")
    (root / "out").mkdir()
    (root / "out/a.txt").write_text("a")
    (root / "out/b.txt").write_text("b")
    record_file = root / "metrics/emissions/sort.json"
    hashes = {f"out/{n}": file_md5(root / "out" / n) for n in ("a.txt", "b.txt")}
    save_record(record_file, record("sort", 0.001).model_copy(update={"outputs": hashes}))
    lock = sort_lock("out", str(directory_md5(root / "out")), record_file)
    (root / "dvc.lock").write_text(lock)
    assert judge_file(root / "params.yaml", root)[0].passed
    # the same files now, but the record (copied from another run) paid for another b.txt
    other = {**hashes, "out/b.txt": "0" * 32}
    save_record(record_file, record("sort", 0.001).model_copy(update={"outputs": other}))
    (root / "dvc.lock").write_text(lock.replace(lock.split("md5: ")[-1].strip(), file_md5(record_file)))
    failures = judge_file(root / "params.yaml", root)[0].failures()
    assert any("its outputs in out/ are not the ones dvc.lock recorded" in f for f in failures)
