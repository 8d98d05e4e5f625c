"""dvc.yaml, pipeline/layout.py and the repository agree."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline import layout
from pipeline.gate import GATE_STAGE, budgeted_stages

ROOT = Path(__file__).resolve().parent.parent
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def definition(stage: str) -> dict:
    """A stage's body; for a `foreach` stage (distill), the template each of its stages is made from."""
    return DVC[stage].get("do", DVC[stage])


def declared(stage: str) -> set[str]:
    paths: set[str] = set()
    for kind in ("outs", "metrics", "plots"):
        for entry in definition(stage).get(kind, []):
            paths.add(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


def test_stages_in_order() -> None:
    assert list(DVC) == ["preprocess", "train", "evaluate", "distill", "export", "gate"]


def test_every_stage_writes_its_record_and_the_gate_reads_them_all() -> None:
    for stage in DVC:
        name = layout.distill_stage("${key}") if "foreach" in DVC[stage] else stage
        assert layout.record_path(name).as_posix() in declared(stage)
        assert f"stages/{stage}.py" in definition(stage)["deps"]
    # students are stages made from params, so the gate learns of them from params (tests/test_distill.py)
    assert budgeted_stages(ROOT / "dvc.yaml") == [s for s in DVC if s not in (GATE_STAGE, "distill")]


def test_distillation_paths_are_declared() -> None:
    assert DVC["distill"]["foreach"] == "${distill.students}"
    for path in (
        layout.student_model("${key}"),
        layout.distill_metrics("${key}"),
        layout.distill_curves("${key}"),
    ):
        assert path.as_posix() in declared("distill"), path
    # export depends on the folder of trained models, so DVC orders it after every student params define
    assert layout.TRAINED_DIR.as_posix() in DVC["export"]["deps"]
    assert layout.MODEL.parent == layout.TRAINED_DIR


def test_layout_paths_are_declared() -> None:
    every = set().union(*(declared(s) for s in DVC))
    for path in (
        layout.PROCESSED_DATA,
        layout.MODEL,
        layout.EXPORT_DIR,
        layout.TRAIN_METRICS,
        layout.EVALUATE_METRICS,
        layout.EXPORT_METRICS,
        layout.GATE_METRICS,
        layout.TRAINING_CURVES,
        layout.CONFUSION,
        layout.PER_CLASS_REPORT,
        layout.ENERGY_PER_STAGE,
        layout.EFFICIENCY,
    ):
        assert path.as_posix() in every, path


def test_pictures_are_drawn_after_the_execution_not_declared_as_outputs() -> None:
    every = set().union(*(declared(s) for s in DVC))
    for picture in (layout.TRAINING_CURVES_PNG, layout.CONFUSION_PNG, layout.ENERGY_PNG):
        assert picture.as_posix() not in every  # DVC would delete and demand them before the worker draws them


def test_records_are_not_cached_so_git_keeps_them_for_base_comparisons() -> None:
    for stage in DVC:
        for entry in definition(stage)["outs"]:
            if isinstance(entry, dict) and next(iter(entry)).startswith("metrics/"):
                assert next(iter(entry.values())) == {"cache": False}
