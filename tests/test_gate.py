"""The gate on files alone: it judges what the budget asks for, in this pipeline or any DVC project."""

from __future__ import annotations

from pathlib import Path

from carbon_budget.gate.evidence import budgeted_stages, judge_file
from carbon_budget.records.dvcyaml import generated_recorded_stages, upstream_stages
from carbon_budget.records.record import save_record
from tests.test_budgets import record

FOREIGN_DVC = """\
stages:
  sort:
    cmd: carbon-budget track --stage sort -- sort in.txt -o out.txt
  gate:
    cmd: ./their-own-check
  carbon_gate:
    cmd: carbon-budget gate
    deps:
      - metrics/emissions/sort.json
"""


def foreign_project(root: Path, budget: str) -> Path:
    (root / "dvc.yaml").write_text(FOREIGN_DVC)
    (root / "params.yaml").write_text(f"train:\n  lr: fast   # the project's own keys are not ours to judge\n{budget}")
    save_record(root / "metrics/emissions/sort.json", record("sort", 0.001))
    # what `dvc repro` leaves: the gate refuses records that no dvc.lock ties to code (tests/test_bad_input.py)
    (root / "dvc.lock").write_text("schema: '2.0'\nstages:\n  sort:\n    cmd: sort in.txt -o out.txt\n")
    return root


def test_carbon_gate_is_preferred_to_a_stage_merely_named_gate(tmp_path: Path) -> None:
    assert budgeted_stages(foreign_project(tmp_path, "") / "dvc.yaml", {}) == ["sort"]


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
    assert verdict.failures() == ["energy (total): 0.001 kWh > budget 0.0001 kWh (params.yaml budget.energy_kwh)"]


def test_foreach_stages_that_write_records_are_owed_by_params() -> None:
    stages = {
        "train": {"cmd": "x", "outs": ["model.pt"]},
        "distill": {
            "foreach": "${distill.students}",
            "do": {"cmd": "d ${key}", "deps": ["model.pt"], "outs": ["metrics/emissions/distill@${key}.json"]},
        },
        "sweep": {"foreach": [1, 2], "do": {"cmd": "s ${item}", "outs": ["metrics/emissions/sweep@${item}.json"]}},
        "noted": {"foreach": ["a"], "do": {"cmd": "n", "outs": ["elsewhere/${item}.json"]}},
    }
    params = {"distill": {"students": {"small": {}, "tiny": {}}}}
    assert generated_recorded_stages(stages, params) == ["distill@small", "distill@tiny", "sweep@1", "sweep@2"]
    assert generated_recorded_stages(stages, {}) == ["sweep@1", "sweep@2"]  # no students: no stage, nothing owed


def test_upstream_stages_follow_deps_to_their_producers() -> None:
    stages = {
        "prepare": {"cmd": "p", "outs": ["data/x.csv"]},
        "features": {"cmd": "f", "deps": ["data"], "outs": ["features.npz"]},  # a folder holding an output
        "other": {"cmd": "o", "outs": ["unrelated.txt"]},
        "fit": {"cmd": "t", "deps": ["features.npz", "fit.py"], "outs": ["model.pt"]},
    }
    assert upstream_stages(stages, "fit") == ["prepare", "features"]
    assert upstream_stages(stages, "prepare") == []
