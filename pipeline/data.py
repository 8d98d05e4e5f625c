"""Load the data set named in params, split it and standardise it.

scikit-learn's digits are read straight from the CSV that scikit-learn ships, and the stratified split is a
few lines of numpy: `import sklearn` alone costs about 1.5 s here, which would be most of this stage's time
(and energy) on the default data. tests/pipeline/test_data.py checks both against scikit-learn itself.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from carbon_budget.files import write_bytes_atomic
from pipeline.config import DataParams
from pipeline.errors import DataError

DIGITS_IMAGE_SHAPE = (1, 8, 8)


@dataclass(frozen=True)
class Dataset:
    """Features and labels as loaded, with the words that name them in a message (`data.csv`, `column 'label'`)."""

    features: np.ndarray
    labels: np.ndarray
    image_shape: tuple[int, ...] | None
    origin: str
    label_origin: str


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
    labels = table[:, -1].astype(np.int64).astype(str)
    return Dataset(table[:, :-1], labels, DIGITS_IMAGE_SHAPE, "scikit-learn's digits", "its target")


def _csv(path: Path, name: str, label_column: str) -> Dataset:
    """`name` is the path as params.yaml writes it: messages speak the user's words, not an absolute path."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise DataError(f"cannot read data.path {name}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"data.path {name} is not a CSV text file in UTF-8 ({exc})") from None
    if not rows or not rows[0]:
        raise DataError(f"{name} is empty: expected a header row and data rows")
    header, body = rows[0], [r for r in rows[1:] if r]
    if label_column not in header:
        raise DataError(
            f"{name} has no label column {label_column!r} (data.label_column); columns are: {', '.join(header)}"
        )
    if not body:
        raise DataError(f"{name} has a header but no data rows")
    label_at = header.index(label_column)
    feature_names = [h for i, h in enumerate(header) if i != label_at]
    features = np.empty((len(body), len(feature_names)), dtype=np.float64)
    labels = []
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{name}:{line}: expected {len(header)} fields, found {len(row)}")
        labels.append(row[label_at].strip())
        for col, value in enumerate(v for i, v in enumerate(row) if i != label_at):
            where = f"{name}:{line}: feature {feature_names[col]!r}"
            try:
                number = float(value)
            except ValueError:
                raise DataError(
                    f"{where} is not numeric ({value!r}); every column but {label_column!r} (data.label_column)"
                    " must hold numbers"
                ) from None
            if not math.isfinite(number):
                raise DataError(
                    f"{where} is NaN or infinite ({value!r}); features must be finite: fill or drop the row"
                )
            features[line - 2, col] = number
    return Dataset(features, np.array(labels), None, name, f"column {label_column!r} (data.label_column)")


def _npz(path: Path, name: str) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "X" not in archive or "y" not in archive:
                raise DataError(f"{name} must hold arrays 'X' and 'y'; it holds {', '.join(archive.files)}")
            features, labels = archive["X"], archive["y"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read data.path {name} as .npz: {exc}") from None
    if features.ndim < 2 or len(features) != len(labels):
        raise DataError(f"{name}: X must be (samples, features...) with one label in y per sample")
    image_shape = tuple(features.shape[1:]) if features.ndim > 2 else None
    if image_shape is not None and len(image_shape) == 2:
        image_shape = (1, *image_shape)
    flat = features.reshape(len(features), -1)
    if not np.issubdtype(flat.dtype, np.number):
        raise DataError(f"{name}: X must be numeric, found dtype {flat.dtype}")
    return Dataset(flat.astype(np.float64), labels.astype(str), image_shape, name, "array 'y'")


def load_dataset(params: DataParams, root: Path) -> Dataset:
    """Load the configured source; every problem a user can cause is a DataError naming the file.

    Nothing is written here: the stage saves splits only once the data have passed every check.
    """
    if params.source == "digits":
        data = _digits()
    else:
        assert params.path is not None  # guaranteed by DataParams validation
        path = (root / params.path).resolve()
        if not path.is_relative_to(root.resolve()):
            raise DataError(
                f"data.path {params.path!r} points outside the project: name a file inside it, relative to its root"
            )
        data = _csv(path, params.path, params.label_column) if params.source == "csv" else _npz(path, params.path)
    if data.features.shape[1] == 0:
        raise DataError(f"{data.origin} has no feature columns")
    bad_rows = np.flatnonzero(~np.isfinite(data.features).all(axis=1))
    if len(bad_rows):
        raise DataError(
            f"{data.origin}: sample {bad_rows[0]} has NaN or infinite features ({len(bad_rows)} samples in all);"
            " features must be finite numbers"
        )
    classes = np.unique(data.labels)
    if len(classes) < 2:
        raise DataError(
            f"{data.origin}: {data.label_origin} holds a single class ({str(classes[0])!r} in all {len(data.labels)}"
            " rows): a classifier needs at least two"
        )
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
    """Written whole or not at all (atomic rename): a crash never leaves a half archive for train to read."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
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
    write_bytes_atomic(path, buffer.getvalue())


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
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read processed data {path} ({exc}); rerun the preprocess stage") from None
