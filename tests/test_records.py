"""The emission record contract: complete, valid records load; anything else is a RecordError naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import RecordError
from pipeline.records import load_record, save_record
from tests.test_budgets import record


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    save_record(path, record("train", 0.001))
    loaded = load_record(path)
    assert loaded.energy_kwh == 0.001
    assert loaded.figures()["energy_wh"] == pytest.approx(1.0)
    assert path.read_text().endswith("\n")


def test_missing_record(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="missing"):
        load_record(tmp_path / "train.json")


def test_truncated_record(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    save_record(path, record("train", 0.001))
    path.write_text(path.read_text()[:40])
    with pytest.raises(RecordError, match=r"train.json: emission record is unreadable or truncated"):
        load_record(path)


@pytest.mark.parametrize(("field", "value"), [("energy_kwh", -1.0), ("energy_kwh", "lots"), ("methods", {})])
def test_invalid_record(tmp_path: Path, field: str, value: object) -> None:
    path = tmp_path / "train.json"
    save_record(path, record("train", 0.001))
    data = json.loads(path.read_text())
    data[field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=f"invalid at {field}"):
        load_record(path)


def test_nan_energy_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    save_record(path, record("train", 0.001))
    path.write_text(path.read_text().replace('"energy_kwh": 0.001', '"energy_kwh": NaN'))
    with pytest.raises(RecordError):
        load_record(path)


def test_missing_field_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    save_record(path, record("train", 0.001))
    data = json.loads(path.read_text())
    del data["co2_kg"]
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="co2_kg"):
        load_record(path)
