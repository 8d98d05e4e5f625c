"""Load the data set named in params, split it and standardise it.

scikit-learn's digits are read straight from the CSV that scikit-learn ships, and the stratified split is a
few lines of numpy: `import sklearn` alone costs about 1.5 s here, which would be most of this stage's time
(and energy) on the default data. tests/test_data.py checks both against scikit-learn itself.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import DataParams
from pipeline.errors import DataError

DIGITS_IMAGE_SHAPE = (1, 8, 8)


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray
    labels: np.ndarray
    image_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Splits:
    """Standardised splits; labels are class indices 0..K-1 into `classes`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    mean: np.ndarray
    std: np.ndarray
    image_shape: tuple[int, ...] | None


def _digits() -> Dataset:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.source 'digits' needs scikit-learn installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    return Dataset(table[:, :-1], table[:, -1].astype(np.int64).astype(str), DIGITS_IMAGE_SHAPE)


def _csv(path: Path, label_column: str) -> Dataset:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise DataError(f"cannot read data.path {path}: {exc.strerror}") from None
    if not rows or not rows[0]:
        raise DataError(f"{path} is empty: expected a header row and data rows")
    header, body = rows[0], [r for r in rows[1:] if r]
    if label_column not in header:
        raise DataError(
            f"{path} has no label column {label_column!r} (data.label_column); columns are: {', '.join(header)}"
        )
    if not body:
        raise DataError(f"{path} has a header but no data rows")
    label_at = header.index(label_column)
    feature_names = [h for i, h in enumerate(header) if i != label_at]
    features = np.empty((len(body), len(feature_names)), dtype=np.float64)
    labels = []
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: expected {len(header)} fields, found {len(row)}")
        labels.append(row[label_at].strip())
        for col, value in enumerate(v for i, v in enumerate(row) if i != label_at):
            try:
                features[line - 2, col] = float(value)
            except ValueError:
                raise DataError(f"{path}:{line}: feature {feature_names[col]!r} is not numeric ({value!r})") from None
    return Dataset(features, np.array(labels), None)


def _npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "X" not in archive or "y" not in archive:
                raise DataError(f"{path} must hold arrays 'X' and 'y'; it holds {', '.join(archive.files)}")
            features, labels = archive["X"], archive["y"]
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as .npz: {exc}") from None
    if features.ndim < 2 or len(features) != len(labels):
        raise DataError(f"{path}: X must be (samples, features...) with one label in y per sample")
    image_shape = tuple(features.shape[1:]) if features.ndim > 2 else None
    if image_shape is not None and len(image_shape) == 2:
        image_shape = (1, *image_shape)
    flat = features.reshape(len(features), -1)
    if not np.issubdtype(flat.dtype, np.number):
        raise DataError(f"{path}: X must be numeric, found dtype {flat.dtype}")
    return Dataset(flat.astype(np.float64), labels.astype(str), image_shape)


def load_dataset(params: DataParams, root: Path) -> Dataset:
    """Load the configured source; every problem a user can cause is a DataError naming the file."""
    if params.source == "digits":
        data = _digits()
    else:
        assert params.path is not None  # guaranteed by DataParams validation
        path = (root / params.path).resolve()
        if not path.is_relative_to(root.resolve()):
            raise DataError(f"data.path {params.path!r} points outside the project")
        data = _csv(path, params.label_column) if params.source == "csv" else _npz(path)
    if data.features.shape[1] == 0:
        raise DataError("the data set has no feature columns")
    if not np.isfinite(data.features).all():
        bad = int((~np.isfinite(data.features)).any(axis=1).sum())
        raise DataError(f"the data set has NaN or infinite feature values in {bad} rows")
    if len(np.unique(data.labels)) < 2:
        raise DataError("the data set has a single class: a classifier needs at least two")
    return data


def stratified_split(
    labels: np.ndarray, test_size: float, val_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train, validation and test, with each class in the same proportion in every split."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_test = max(1, math.floor(len(members) * test_size + 0.5))
        n_val = max(1, math.floor(len(members) * val_size + 0.5))
        if len(members) - n_test - n_val < 1:
            raise DataError(f"class {cls!r} has {len(members)} samples: too few to appear in train, val and test")
        parts[2].append(members[:n_test])
        parts[1].append(members[n_test : n_test + n_val])
        parts[0].append(members[n_test + n_val :])
    train, val, test = (rng.permutation(np.concatenate(p)) for p in parts)
    return train, val, test


def prepare(data: Dataset, params: DataParams) -> Splits:
    """Split, then standardise with statistics fitted on the training split alone (and clip at clip_sigma)."""
    classes = sorted(np.unique(data.labels).tolist(), key=lambda c: (len(c), c))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in data.labels], dtype=np.int64)
    train, val, test = stratified_split(y, params.test_size, params.val_size, params.seed)
    mean = data.features[train].mean(axis=0)
    std = data.features[train].std(axis=0)
    std[std == 0] = 1.0

    def scaled(rows: np.ndarray) -> np.ndarray:
        standard = (data.features[rows] - mean) / std
        if params.clip_sigma is not None:
            # a feature that barely varies in training (a corner pixel) would otherwise reach +-280 on a test
            # row: it swamps the others and wrecks the int8 scale of a quantised model
            standard = np.clip(standard, -params.clip_sigma, params.clip_sigma)
        return standard.astype(np.float32)

    return Splits(
        scaled(train),
        y[train],
        scaled(val),
        y[val],
        scaled(test),
        y[test],
        classes,
        mean,
        std,
        data.image_shape,
    )


def save_splits(splits: Splits, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        x_train=splits.x_train,
        y_train=splits.y_train,
        x_val=splits.x_val,
        y_val=splits.y_val,
        x_test=splits.x_test,
        y_test=splits.y_test,
        mean=splits.mean,
        std=splits.std,
        classes=np.array(splits.classes),
        image_shape=np.array(splits.image_shape or (), dtype=np.int64),
    )


def load_splits(path: Path) -> Splits:
    try:
        with np.load(path, allow_pickle=False) as a:
            shape = tuple(int(v) for v in a["image_shape"])
            return Splits(
                a["x_train"],
                a["y_train"],
                a["x_val"],
                a["y_val"],
                a["x_test"],
                a["y_test"],
                [str(c) for c in a["classes"]],
                a["mean"],
                a["std"],
                shape or None,
            )
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read processed data {path} ({exc}); rerun the preprocess stage") from None
