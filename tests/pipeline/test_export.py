"""Export: every format from a small trained model, checked against it; the deployed artifact is what is gated."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import DataParams, ModelParams, TrainParams
from pipeline.data import load_dataset, prepare
from pipeline.export import ExportError, check_artifact, write_artifacts
from pipeline.models import build_model, model_config
from pipeline.training import train_model
from tests.conftest import edit_params, run


@pytest.fixture(scope="module")
def trained():  # type: ignore[no-untyped-def]
    splits = prepare(load_dataset(DataParams(), Path.cwd()), DataParams())
    config = model_config(ModelParams(), splits.x_train.shape[1], len(splits.classes), None)
    model = build_model(config, seed=1)
    train_model(model, splits, TrainParams(epochs=5), torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        reference = model(torch.from_numpy(splits.x_test)).numpy()
    return model, splits, reference


def test_every_format_matches_the_trained_model(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, splits, reference = trained
    paths = write_artifacts(model, 64, ["torchscript", "onnx", "onnx_int8"], tmp_path, opset=17)
    checks = {f: check_artifact(f, p, reference, splits.x_test, splits.y_test, 64, 0.01) for f, p in paths.items()}
    assert checks["torchscript"].max_abs_diff is not None and checks["torchscript"].max_abs_diff < 1e-4
    assert checks["onnx"].max_abs_diff is not None and checks["onnx"].max_abs_diff < 1e-4
    assert checks["onnx_int8"].max_abs_diff is None  # not an fp32 format: judged on accuracy
    assert checks["onnx_int8"].accuracy_drop <= 0.005
    assert checks["onnx"].size_mb / checks["onnx_int8"].size_mb >= 3
    assert all(c.latency_ms_per_batch > 0 for c in checks.values())


def test_int8_alone_needs_no_fp32_onnx_on_disk(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = trained
    paths = write_artifacts(model, 64, ["onnx_int8"], tmp_path, opset=17)
    assert [p.name for p in tmp_path.iterdir()] == [paths["onnx_int8"].name]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx", "onnx_int8"])
def test_truncated_artifact_fails_with_a_clear_message(trained, tmp_path: Path, fmt: str) -> None:  # type: ignore[no-untyped-def]
    model, splits, reference = trained
    path = write_artifacts(model, 64, [fmt], tmp_path, opset=17)[fmt]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ExportError, match=f"{fmt} artifact cannot be loaded"):
        check_artifact(fmt, path, reference, splits.x_test, splits.y_test, 64, 0.01)


def test_accuracy_drop_over_the_limit_fails(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, splits, reference = trained
    degraded = copy.deepcopy(model)
    torch.manual_seed(0)
    with torch.no_grad():  # an artifact that truly lost accuracy: its weights no longer the trained model's
        for parameter in degraded.parameters():
            parameter.add_(torch.randn_like(parameter) * parameter.std() * 3, alpha=1.0)
    path = write_artifacts(degraded, 64, ["onnx"], tmp_path, opset=17)["onnx"]
    with pytest.raises(ExportError, match=r"max_accuracy_drop = 1\.00%"):
        check_artifact("onnx", path, reference, splits.x_test, splits.y_test, 64, 0.01)


def front_matter(card: Path) -> dict[str, object]:
    text = card.read_text()
    assert text.startswith("---\n")
    parsed: dict[str, object] = yaml.safe_load(text.split("---\n")[1])
    return parsed


@pytest.mark.integration
def test_deploying_int8_turns_a_failing_size_budget_into_a_passing_one(project: Path, tool_env: dict[str, str]) -> None:
    edit_params(project, export={"formats": ["onnx", "onnx_int8"], "deploy": "onnx"}, budget={"model_size_mb": 0.05})
    failed = run(["dvc", "repro"], project, tool_env, check=False)
    assert failed.returncode != 0 and "budget.model_size_mb" in failed.stderr

    edit_params(project, export={"deploy": "onnx_int8"})
    run(["dvc", "repro"], project, tool_env)
    gate = json.loads((project / "metrics/gate.json").read_text())
    assert gate["passed"] and gate["model_size_mb"] < 0.05

    card = front_matter(project / "models/export/README.md")
    emissions = card["co2_eq_emissions"]
    assert isinstance(emissions, dict) and emissions["source"] == "codecarbon"
    grams = sum(
        json.loads((project / f"metrics/emissions/{s}.json").read_text())["co2_kg"] * 1000
        for s in ("preprocess", "train", "evaluate")
    )
    assert emissions["emissions"] == pytest.approx(grams, rel=1e-3)
    assert card["library_name"] == "onnx"
