"""Pictures people would rather look at than read, drawn once per execution from the files the stages wrote.

Stages write plot data (CSV that `dvc plots show` renders); the gate draws the PNGs for people and MLflow, in
the warm background worker when there is one, so matplotlib's ~0.6 s import is paid once and off the
critical path instead of in every stage.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.files import read_json
from carbon_budget.records.record import summarize_methods


def warm_up() -> None:
    """Import matplotlib's figure machinery ahead of the first picture."""
    _figure(1, 1)


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def training_curves(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, train against validation."""
    figure = _figure(9, 3.5)
    epochs = [float(r["epoch"]) for r in rows]
    for index, metric in enumerate(("loss", "accuracy")):
        axes = figure.add_subplot(1, 2, index + 1)
        axes.plot(epochs, [float(r[f"train_{metric}"]) for r in rows], label="train")
        axes.plot(epochs, [float(r[f"val_{metric}"]) for r in rows], label="validation")
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.legend()
    _save(figure, path)


def confusion_matrix(pairs: Sequence[dict[str, str]], path: Path) -> None:
    """Counts of (actual, predicted) test labels; classes in natural order (2 before 10)."""
    classes = sorted({p["actual"] for p in pairs} | {p["predicted"] for p in pairs}, key=lambda c: (len(c), c))
    index = {c: i for i, c in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for pair in pairs:
        matrix[index[pair["actual"]]][index[pair["predicted"]]] += 1
    figure = _figure(5, 4.5)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    axes.set_xticks(range(len(classes)), classes)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    limit = max(max(row) for row in matrix) / 2
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                axes.text(
                    j, i, str(count), ha="center", va="center", fontsize=7, color="white" if count > limit else "black"
                )
    _save(figure, path)


def energy_per_stage(stages: dict[str, dict[str, Any]], path: Path) -> None:
    """Wh per stage, split CPU / GPU / RAM, each bar labelled measured or estimated."""
    figure = _figure(7, 0.6 * len(stages) + 1.4)
    axes = figure.add_subplot(1, 1, 1)
    names = list(stages)
    left = [0.0] * len(names)
    for component, colour in (("cpu", "#4c72b0"), ("gpu", "#55a868"), ("ram", "#c44e52")):
        widths = [stages[n].get(f"{component}_energy_kwh", 0.0) * 1000 for n in names]
        axes.barh(names, widths, left=left, color=colour, label=component.upper())
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for y, name in enumerate(names):
        axes.text(left[y], y, f" {left[y]:.3g} Wh ({stages[name].get('measurement', '?')})", va="center", fontsize=8)
    axes.set_xlim(0, max(left or [1]) * 1.5 or 1)
    axes.invert_yaxis()
    axes.set_xlabel("energy (Wh)")
    axes.legend(loc="lower right", fontsize=8)
    _save(figure, path)


# the pictures a project can ask for by kind, each drawn from a CSV of its own (see `draw_execution`)
DRAWERS = {"curves": training_curves, "confusion": confusion_matrix}


def draw_execution(work_dir: str, stages: list[str], pictures: list[dict[str, str]]) -> list[str]:
    """Draw every picture whose data exists under `work_dir`; returns the paths written. `pictures` are the
    project's own (`{"kind": "curves" | "confusion", "data": CSV, "png": PNG}`: train_/val_ loss and accuracy per
    epoch; actual/predicted pairs); the energy per stage is always drawn. Plain-data arguments and result, so the
    background worker can run it while the gate judges."""
    root = Path(work_dir)
    written = []
    for picture in pictures:
        data = root / picture["data"]
        if data.is_file():
            DRAWERS[picture["kind"]](_rows(data), root / picture["png"])
            written.append(picture["png"])
    figures = {}
    for stage in stages:
        with contextlib.suppress(OSError, ValueError):
            record = read_json(root / layout.record_path(stage))
            figures[stage] = {**record, "measurement": summarize_methods(record.get("methods", {}).values())}
    if figures:
        energy_per_stage(figures, root / layout.ENERGY_PNG)
        written.append(layout.ENERGY_PNG.as_posix())
    return written
