"""Pictures people would rather look at than read. matplotlib is imported only when a picture is drawn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def training_curves(rows: Sequence[dict[str, float]], path: Path) -> None:
    """Loss and accuracy per epoch, train against validation."""
    figure = _figure(9, 3.5)
    epochs = [r["epoch"] for r in rows]
    for index, metric in enumerate(("loss", "accuracy")):
        axes = figure.add_subplot(1, 2, index + 1)
        axes.plot(epochs, [r[f"train_{metric}"] for r in rows], label="train")
        axes.plot(epochs, [r[f"val_{metric}"] for r in rows], label="validation")
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def confusion_matrix(matrix: list[list[int]], classes: list[str], path: Path) -> None:
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
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
