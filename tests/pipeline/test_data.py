"""Data loading and splitting, checked against scikit-learn itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from pipeline.config import DataParams
from pipeline.data import load_dataset, load_splits, prepare, save_splits, stratified_split
from pipeline.errors import DataError


def test_digits_match_scikit_learn() -> None:
    ours = load_dataset(DataParams(), Path.cwd())
    theirs = load_digits()
    assert np.array_equal(ours.features, theirs.data)
    assert np.array_equal(ours.labels.astype(int), theirs.target)
    assert ours.image_shape == (1, 8, 8)


def test_split_is_stratified_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    train, val, test = stratified_split(labels, 0.2, 0.1, seed=1)
    assert len(set(train) | set(val) | set(test)) == len(labels) == len(train) + len(val) + len(test)
    for part, share in ((test, 0.2), (val, 0.1)):
        counts = np.bincount(labels[part], minlength=4)
        assert np.allclose(counts / np.bincount(labels), share, atol=0.03)
    again = stratified_split(labels, 0.2, 0.1, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))


def test_standardisation_is_fitted_on_train_only() -> None:
    unclipped = DataParams(clip_sigma=None)
    splits = prepare(load_dataset(unclipped, Path.cwd()), unclipped)
    assert np.allclose(splits.x_train.mean(axis=0), 0, atol=1e-5)
    assert not np.allclose(splits.x_test.mean(axis=0), 0, atol=1e-5)
    assert splits.classes == [str(d) for d in range(10)]
    assert np.abs(splits.x_test).max() > 100  # a corner pixel that is almost always blank in training


def test_clipping_bounds_every_split() -> None:
    splits = prepare(load_dataset(DataParams(), Path.cwd()), DataParams(clip_sigma=5.0))
    for part in (splits.x_train, splits.x_val, splits.x_test):
        assert np.abs(part).max() <= 5.0


def write_csv(tmp_path: Path, text: str) -> DataParams:
    (tmp_path / "d.csv").write_text(text)
    return DataParams(source="csv", path="d.csv", label_column="label")


def test_csv_source(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i % 3},{'ab'[i % 2]}" for i in range(60))
    data = load_dataset(write_csv(tmp_path, "x,y,label\n" + rows + "\n"), tmp_path)
    assert data.features.shape == (60, 2)
    assert set(data.labels) == {"a", "b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("x,y\n1,2\n", "no label column 'label'"),
        ("x,label\n", "no data rows"),
        ("x,label\nabc,a\n1,b\n", "not numeric"),
        ("x,label\n1,a\n2,a\n3,a\n", "single class"),
        ("x,label\nnan,a\n1,b\n", "NaN"),
    ],
)
def test_bad_csv_gets_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset(write_csv(tmp_path, text), tmp_path)


def test_npz_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(40, 4, 4)), y=np.arange(40) % 2)
    data = load_dataset(DataParams(source="npz", path="d.npz"), tmp_path)
    assert data.features.shape == (40, 16) and data.image_shape == (1, 4, 4)


def test_path_outside_the_project_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="outside the project"):
        load_dataset(DataParams(source="csv", path="../elsewhere.csv"), tmp_path)


def test_messages_name_the_file_as_params_writes_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(write_csv(tmp_path, "x,label\n1,a\n2,a\n"), tmp_path)
    message = str(caught.value)
    assert message.startswith("d.csv: column 'label' (data.label_column) holds a single class ('a' in all 2 rows)")
    assert str(tmp_path) not in message


def test_csv_that_is_not_utf8_text(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(b"x,label\n\xff\xfe,a\n")
    with pytest.raises(DataError, match=r"d\.csv is not a CSV text file in UTF-8"):
        load_dataset(DataParams(source="csv", path="d.csv"), tmp_path)


def test_truncated_npz_and_nan_in_npz(tmp_path: Path) -> None:
    features = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.savez(tmp_path / "d.npz", X=features, y=np.arange(6) % 2)
    whole = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cannot read data\.path d\.npz as \.npz"):
        load_dataset(DataParams(source="npz", path="d.npz"), tmp_path)
    features[3, 1] = np.nan
    np.savez(tmp_path / "d.npz", X=features, y=np.arange(6) % 2)
    with pytest.raises(DataError, match=r"d.npz: sample 3 has NaN or infinite features \(1 samples in all\)"):
        load_dataset(DataParams(source="npz", path="d.npz"), tmp_path)


def test_splits_round_trip_and_a_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "splits.npz"
    save_splits(prepare(load_dataset(DataParams(), Path.cwd()), DataParams()), path)
    assert [p.name for p in tmp_path.iterdir()] == ["splits.npz"]  # written by rename: no temporary left over
    assert load_splits(path).classes == [str(d) for d in range(10)]
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="rerun the preprocess stage"):
        load_splits(path)


def test_a_link_inside_the_project_to_a_file_outside_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "secret.csv").write_text("x,label\n1,a\n2,b\n")
    (project / "d.csv").symlink_to(tmp_path / "secret.csv")
    with pytest.raises(DataError, match="points outside the project"):
        load_dataset(DataParams(source="csv", path="d.csv"), project)
