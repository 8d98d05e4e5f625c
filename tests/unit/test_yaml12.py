"""params.yaml, dvc.yaml and dvc.lock are read as DVC reads them (YAML 1.2), scalar for scalar: a value the plugin
reads otherwise than DVC makes a record stale for ever (`1e-3` a string to PyYAML, 0.001 to DVC)."""

from __future__ import annotations

import math

import pytest
from dvc.utils.serialize import parse_yaml as dvc_parse_yaml

from carbon_budget.files import parse_yaml

SCALARS = [
    "1e-3", "5e-4", "+1e3", "1E3", "1.0e+3", "-2.5e-7", ".5", "1.", "-.5", "1_000", "1_000.5",
    "on", "off", "On", "OFF", "yes", "no", "Yes", "y", "n", "true", "True", "FALSE",
    "017", "0o17", "0x1F", "0b101", "-017", "+12", "0", "-0", "12:30", "1:20:30.5",
    ".inf", "-.Inf", ".nan", "NaN", "nan", "inf", "~", "null", "Null", "", "2001-12-14",
    "2001-12-14 21:59:43.10 -5", "0.1.2", "1e", "e3", "<<x", "abc",
]  # fmt: skip


@pytest.mark.parametrize("scalar", SCALARS)
def test_every_scalar_reads_as_dvc_reads_it(scalar: str) -> None:
    text = f"key: {scalar}\n" if scalar else "key:\n"
    ours, theirs = parse_yaml(text)["key"], dvc_parse_yaml(text, "params.yaml")["key"]
    if isinstance(theirs, float) and math.isnan(theirs):
        assert isinstance(ours, float) and math.isnan(ours)
    else:
        assert (ours, type(ours)) == (theirs, type(theirs))


def test_a_team_params_file_reads_as_dvc_reads_it() -> None:
    text = "train:\n  lr: 1e-3\n  weight_decay: 5e-4\n  schedule: on\n  epochs: 3\n  tags: [yes, no]\n"
    assert parse_yaml(text) == dvc_parse_yaml(text, "params.yaml")
    assert parse_yaml(text)["train"] == {
        "lr": 0.001, "weight_decay": 0.0005, "schedule": "on", "epochs": 3, "tags": ["yes", "no"]
    }  # fmt: skip
