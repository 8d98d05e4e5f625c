"""params.yaml validation: one clear message naming the key, the value and what is allowed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from carbon_budget.errors import ParamsError
from pipeline.config import load_params, parse_params
from tests.conftest import ROOT


def base() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def message_for(raw: dict[str, Any]) -> str:
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    return str(caught.value)


def test_shipped_params_are_valid() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.data.source == "digits"
    assert params.budget.energy_kwh > 0
    assert params.carbon.country_iso_code == "USA"


def test_unknown_key_is_named_with_the_allowed_keys() -> None:
    raw = base()
    raw["train"]["epoch"] = 3
    message = message_for(raw)
    assert "unknown key train.epoch" in message
    assert "epochs" in message and "batch_size" in message


def test_unknown_stage_budget_key_lists_stage_budget_keys() -> None:
    raw = base()
    raw["budget"]["stages"] = {"train": {"energy": 1.0}}
    message = message_for(raw)
    assert "budget.stages.train.energy" in message
    assert "energy_kwh" in message


def test_wrong_type_names_key_and_value() -> None:
    raw = base()
    raw["train"]["epochs"] = "twenty"
    message = message_for(raw)
    assert "train.epochs = 'twenty'" in message


@pytest.mark.parametrize("value", [-1.0, 0.0, math.nan, math.inf])
def test_budget_must_be_a_positive_finite_number(value: float) -> None:
    raw = base()
    raw["budget"]["energy_kwh"] = value
    assert "budget.energy_kwh" in message_for(raw)


def test_unknown_architecture_lists_allowed_values() -> None:
    raw = base()
    raw["model"]["arch"] = "rnn"
    message = message_for(raw)
    assert "model.arch = 'rnn'" in message and "'mlp'" in message and "'cnn'" in message


def test_unknown_data_source() -> None:
    raw = base()
    raw["data"]["source"] = "mnist"
    assert "data.source = 'mnist'" in message_for(raw)


def test_file_sources_need_a_path() -> None:
    raw = base()
    raw["data"]["source"] = "csv"
    assert "data.path is required" in message_for(raw)


def test_unknown_country_code_is_rejected_not_averaged() -> None:
    raw = base()
    raw["carbon"]["country_iso_code"] = "XXX"
    message = message_for(raw)
    assert "carbon.country_iso_code = 'XXX'" in message and "unknown country code" in message


def test_missing_budget_section() -> None:
    raw = base()
    del raw["budget"]
    assert "missing key budget" in message_for(raw)


def test_deploy_must_be_exported() -> None:
    raw = base()
    raw["export"]["formats"] = []
    assert "export.formats" in message_for(raw)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "nope.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(broken)


def test_this_pipeline_requires_a_model_size_budget() -> None:
    raw = base()
    del raw["budget"]["model_size_mb"]
    assert "missing key budget.model_size_mb" in message_for(raw)
