"""The emission record contract: complete, valid records load; anything else is a RecordError naming the file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from carbon_budget.errors import RecordError
from carbon_budget.records.lockfile import directory_md5, load_lock
from carbon_budget.records.record import file_md5, load_record, save_record
from tests.conftest import record


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


def lock_with(tmp_path: Path, deps: list[dict[str, str]]) -> Path:
    (tmp_path / "dvc.lock").write_text(json.dumps({"schema": "2.0", "stages": {"train": {"cmd": "x", "deps": deps}}}))
    return tmp_path


def test_a_record_cannot_vouch_without_dvc_lock(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match=r"dvc\.lock is missing"):
        load_lock(tmp_path)
    (tmp_path / "dvc.lock").write_text("stages: [unclosed\n")
    with pytest.raises(RecordError, match=r"dvc\.lock is unreadable"):
        load_lock(tmp_path)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    with pytest.raises(RecordError, match="lists no stages"):
        load_lock(tmp_path)


def test_inputs_changed_since_dvc_ran_the_stage(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("code as it ran\n")
    (tmp_path / "splits.npz").write_bytes(b"data")
    (tmp_path / "metrics/emissions").mkdir(parents=True)
    (tmp_path / "metrics/emissions/preprocess.json").write_text("{}")
    deps = [
        {"path": "train.py", "md5": file_md5(tmp_path / "train.py")},
        {"path": "splits.npz", "md5": file_md5(tmp_path / "splits.npz")},
        {"path": "gone.py", "md5": "0" * 32},
        {"path": "metrics/emissions/preprocess.json", "md5": "0" * 32},  # judged on its own, not again here
    ]
    lock = load_lock(lock_with(tmp_path, deps))
    assert lock.changed_inputs("train", tmp_path) == ["its input gone.py is missing"]
    (tmp_path / "train.py").write_text("code changed after the model was built\n")
    assert "its input train.py has changed since it ran" in lock.changed_inputs("train", tmp_path)
    assert lock.changed_inputs("distill", tmp_path) == [
        "dvc.lock has no entry for stage distill (it never ran under `dvc repro`)"
    ]


def test_a_directory_input_counts_for_staleness(tmp_path: Path) -> None:
    """The hash is DVC's own (checked against a listing DVC wrote, in tests/e2e/test_pipeline.py's repro). The reason
    names the file inside that changed when dvc.lock records it as another stage's output, and the file count
    when DVC counted them."""
    folder = tmp_path / "models/trained"
    (folder / "students").mkdir(parents=True)
    (folder / "teacher.pt").write_bytes(b"weights")
    (folder / "students/small.pt").write_bytes(b"student")
    digest = directory_md5(folder)
    assert digest is not None and digest.endswith(".dir")
    student = {"path": "models/trained/students/small.pt", "md5": hashlib.md5(b"student").hexdigest()}
    (tmp_path / "dvc.lock").write_text(
        json.dumps(
            {
                "schema": "2.0",
                "stages": {
                    "export": {"cmd": "x", "deps": [{"path": "models/trained", "md5": digest, "nfiles": 2}]},
                    "distill": {"cmd": "y", "outs": [student]},
                },
            }
        )
    )
    lock = load_lock(tmp_path)
    assert lock.changed_inputs("export", tmp_path) == []
    (folder / "students/small.pt").write_bytes(b"another student")
    assert lock.changed_inputs("export", tmp_path) == [
        "its directory models/trained has changed since it ran (models/trained/students/small.pt has changed)"
    ]
    (folder / "students/small.pt").write_bytes(b"student")
    (folder / "students/extra.pt").write_bytes(b"one more")
    assert lock.changed_inputs("export", tmp_path) == [
        "its directory models/trained has changed since it ran (3 files where DVC counted 2)"
    ]
    (folder / "students/extra.pt").unlink()
    (folder / "students/small.pt").unlink()
    assert lock.changed_inputs("export", tmp_path) == [
        "its directory models/trained has changed since it ran"
        " (models/trained/students/small.pt is missing; 1 files where DVC counted 2)"
    ]
    shutil.rmtree(folder)
    assert lock.changed_inputs("export", tmp_path) == ["its directory models/trained is missing"]


def test_a_directory_output_is_compared_file_by_file_with_dvcs_cached_listing(tmp_path: Path) -> None:
    """DVC caches the listing of a directory a stage outputs: every file in it can then be named."""
    folder = tmp_path / "models/export"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "README.md").write_bytes(b"card")
    digest = directory_md5(folder)
    assert digest is not None
    listing = tmp_path / ".dvc/cache/files/md5" / digest[:2] / digest[2:]
    listing.parent.mkdir(parents=True)
    listing.write_text(
        json.dumps(
            [
                {"md5": hashlib.md5(b"card").hexdigest(), "relpath": "README.md"},
                {"md5": hashlib.md5(b"onnx").hexdigest(), "relpath": "model.onnx"},
            ]
        )
    )
    lock = load_lock(lock_with(tmp_path, [{"path": "models/export", "md5": digest}]))
    (folder / "README.md").write_bytes(b"another card")
    assert lock.changed_inputs("train", tmp_path) == [
        "its directory models/export has changed since it ran (models/export/README.md has changed)"
    ]


def test_params_dvc_recorded_must_equal_todays(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("fit:\n  alpha: 0.1\n  layers: [8, 8]\n")
    entry = {"cmd": "x", "params": {"params.yaml": {"fit.alpha": 0.1, "fit": {"alpha": 0.1, "layers": [8, 8]}}}}
    (tmp_path / "dvc.lock").write_text(json.dumps({"schema": "2.0", "stages": {"fit": entry}}))
    lock = load_lock(tmp_path)
    assert lock.changed_inputs("fit", tmp_path) == []
    (tmp_path / "params.yaml").write_text("fit:\n  alpha: 0.5\n  layers: [8, 8]\n")
    assert lock.changed_inputs("fit", tmp_path) == [
        "params.yaml `fit.alpha` differs from its value when DVC last ran it (0.1 then, 0.5 now)",
        "params.yaml `fit` differs from its value when DVC last ran it",
    ]


def test_a_record_written_before_the_rename_still_loads(tmp_path: Path) -> None:
    """Records before 0.3.0 named the intensity's source `intensity_source`; a base branch still holds them."""
    raw = record("train", 1e-5).model_dump(mode="json")
    raw["intensity_source"] = raw.pop("carbon_intensity_source")
    (tmp_path / "old.json").write_text(json.dumps(raw))
    assert load_record(tmp_path / "old.json").carbon_intensity_source == "test"
