"""Pictures people would rather look at than read, drawn once per execution from the files the stages wrote.

Stages write plot data (CSV that `dvc plots show` renders); the gate draws SVG pictures for people and MLflow
(both show SVG as an image, and so do DVC and GitHub). They are written as plain SVG text, not with a plotting
library: matplotlib's import and three figures cost 1.4 CPU-seconds in the background worker after every
execution, a fifth of the tool's own cost, for three charts of a few dozen shapes each. Every bar and cell
carries its figure as a tooltip.
"""

from __future__ import annotations

import contextlib
import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from carbon_budget import layout
from carbon_budget.files import read_json
from carbon_budget.records.record import summarize_methods

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
COMPONENTS = (("cpu", "#4c72b0"), ("gpu", "#55a868"), ("ram", "#c44e52"))
SERIES = (("train", "#4c72b0"), ("validation", "#dd8452"))
CHAR_W = 6.5  # average width of one character at 11 px, for margins that fit the labels


class _Svg:
    """A canvas that collects SVG elements and writes them as one file."""

    def __init__(self, width: float, height: float) -> None:
        self.width, self.height = width, height
        self._parts: list[str] = []

    def rect(self, x: float, y: float, w: float, h: float, fill: str, tip: str | None = None, **extra: str) -> None:
        attributes = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in extra.items())
        body = f"<title>{escape(tip)}</title>" if tip else ""
        self._parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{fill}"'
            f"{attributes}>{body}</rect>"
        )

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = "#333", width: float = 1) -> None:
        self._parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}"/>'
        )

    def polyline(self, points: Sequence[tuple[float, float]], stroke: str) -> None:
        coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self._parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{stroke}" stroke-width="1.8"/>')

    def text(
        self,
        x: float,
        y: float,
        content: str,
        size: float = 11,
        anchor: str = "start",
        colour: str = "#222",
        rotate: bool = False,
    ) -> None:
        turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
        self._parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{colour}"'
            f' dominant-baseline="middle"{turn}>{escape(content)}</text>'
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width:.0f}" height="{self.height:.0f}"'
            f' viewBox="0 0 {self.width:.0f} {self.height:.0f}" font-family="{FONT}">'
            f'<rect width="100%" height="100%" fill="white"/>'
        )
        path.write_text("\n".join([head, *self._parts, "</svg>", ""]), encoding="utf-8")


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values (1, 2, 2.5 or 5 times a power of ten apart) covering [low, high] in about `count` steps."""
    if not high > low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(round((last - first) / step) + 1)]


class _Axes:
    """A plotting area on a canvas: data coordinates to pixels, a frame, ticks and labels."""

    def __init__(self, svg: _Svg, box: tuple[float, float, float, float], xs: list[float], ys: list[float]) -> None:
        self.svg, (self.left, self.top, self.width, self.height) = svg, box
        self.xs, self.ys = xs, ys

    def x(self, value: float) -> float:
        return self.left + (value - self.xs[0]) / (self.xs[-1] - self.xs[0]) * self.width

    def y(self, value: float) -> float:
        return self.top + self.height - (value - self.ys[0]) / (self.ys[-1] - self.ys[0]) * self.height

    def frame(self, x_label: str, y_label: str | None) -> None:
        svg, bottom = self.svg, self.top + self.height
        for value in self.xs:
            svg.line(self.x(value), self.top, self.x(value), bottom, stroke="#e5e5e5")
            svg.text(self.x(value), bottom + 12, f"{value:g}", size=10, anchor="middle")
        if y_label is not None:
            for value in self.ys:
                svg.line(self.left, self.y(value), self.left + self.width, self.y(value), stroke="#e5e5e5")
                svg.text(self.left - 5, self.y(value), f"{value:g}", size=10, anchor="end")
            svg.text(self.left - 42, self.top + self.height / 2, y_label, anchor="middle", rotate=True)
        svg.rect(self.left, self.top, self.width, self.height, "none", stroke="#333")
        svg.text(self.left + self.width / 2, bottom + 30, x_label, anchor="middle")


def _legend(svg: _Svg, x: float, y: float, entries: Sequence[tuple[str, str]], across: bool = False) -> None:
    """Coloured squares and their labels, stacked, or side by side when `across`."""
    for index, (label, colour) in enumerate(entries):
        dx, dy = (70 * index, 0) if across else (0, 16 * index)
        svg.rect(x + dx, y + dy - 5, 10, 10, colour)
        svg.text(x + dx + 15, y + dy, label, size=10)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def training_curves(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, train against validation, side by side."""
    svg = _Svg(900, 340)
    epochs = [float(r["epoch"]) for r in rows]
    for index, metric in enumerate(("loss", "accuracy")):
        series = [
            (name, colour, [float(r[f"{'val' if name == 'validation' else name}_{metric}"]) for r in rows])
            for name, colour in SERIES
        ]
        values = [v for _, _, vs in series for v in vs]
        axes = _Axes(
            svg, (70 + 450 * index, 34, 350, 256), ticks(min(epochs), max(epochs)), ticks(min(values), max(values))
        )
        axes.frame("epoch", metric)
        for _, colour, vs in series:
            svg.polyline([(axes.x(e), axes.y(v)) for e, v in zip(epochs, vs, strict=True)], colour)
    _legend(svg, 70, 14, SERIES, across=True)
    svg.save(path)


def _blue(share: float) -> str:
    """White to dark blue as `share` goes from 0 to 1."""
    low, high = (247, 251, 255), (8, 48, 107)
    return "#" + "".join(f"{round(a + (b - a) * share):02x}" for a, b in zip(low, high, strict=True))


def confusion_matrix(pairs: Sequence[dict[str, str]], path: Path) -> None:
    """Counts of (actual, predicted) test labels; classes in natural order (2 before 10)."""
    classes = sorted({p["actual"] for p in pairs} | {p["predicted"] for p in pairs}, key=lambda c: (len(c), c))
    index = {c: i for i, c in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for pair in pairs:
        matrix[index[pair["actual"]]][index[pair["predicted"]]] += 1
    cell = 34.0
    margin = 40 + CHAR_W * max((len(c) for c in classes), default=1)
    svg = _Svg(margin + cell * len(classes) + 20, margin + cell * len(classes) + 20)
    most = max((max(row) for row in matrix), default=0) or 1
    for i, row in enumerate(matrix):
        svg.text(margin - 6, margin + cell * (i + 0.5), classes[i], size=10, anchor="end")
        svg.text(margin + cell * (i + 0.5), margin - 10, classes[i], size=10, anchor="middle")
        for j, count in enumerate(row):
            x, y = margin + cell * j, margin + cell * i
            tip = f"actual {classes[i]}, predicted {classes[j]}: {count}"
            svg.rect(x, y, cell, cell, _blue(count / most), tip, stroke="#ffffff")
            if count:
                colour = "white" if count > most / 2 else "black"
                svg.text(x + cell / 2, y + cell / 2, str(count), size=10, anchor="middle", colour=colour)
    svg.text(margin + cell * len(classes) / 2, 12, "predicted", anchor="middle")
    svg.text(12, margin + cell * len(classes) / 2, "actual", anchor="middle", rotate=True)
    svg.save(path)


def energy_per_stage(stages: dict[str, dict[str, Any]], path: Path) -> None:
    """Wh per stage, split CPU / GPU / RAM, each bar labelled with its total and measured or estimated."""
    names = list(stages)
    parts = {n: [(c, colour, stages[n].get(f"{c}_energy_kwh", 0.0) * 1000) for c, colour in COMPONENTS] for n in names}
    totals = {n: sum(wh for _, _, wh in parts[n]) for n in names}
    left = 20 + CHAR_W * max((len(n) for n in names), default=1)
    row = 34.0
    svg = _Svg(760, 40 + row * len(names) + 50)
    axes = _Axes(
        svg,
        (left, 30, 740 - left - 170, row * len(names)),
        ticks(0, max(totals.values(), default=0) or 1),
        [0.0, float(len(names))],
    )
    axes.frame("energy (Wh)", None)
    for index, name in enumerate(names):
        y, start = axes.y(len(names) - index) + 6, 0.0
        svg.text(left - 6, y + (row - 12) / 2, name, anchor="end")
        for component, colour, wh in parts[name]:
            svg.rect(
                axes.x(start),
                y,
                axes.x(start + wh) - axes.x(start),
                row - 12,
                colour,
                f"{name} {component.upper()}: {wh:.3g} Wh",
            )
            start += wh
        label = f"{totals[name]:.3g} Wh ({stages[name].get('measurement', '?')})"
        svg.text(axes.x(start) + 5, y + (row - 12) / 2, label, size=10)
    _legend(svg, left, 14, [(c.upper(), colour) for c, colour in COMPONENTS], across=True)
    svg.save(path)


# the pictures a project can ask for by kind, each drawn from a CSV of its own (see `draw_execution`)
DRAWERS = {"curves": training_curves, "confusion": confusion_matrix}


def draw_execution(work_dir: str, stages: list[str], pictures: list[dict[str, str]]) -> list[str]:
    """Draw every picture whose data exists under `work_dir`; returns the paths written. `pictures` are the
    project's own (`{"kind": "curves" | "confusion", "data": CSV, "picture": SVG}`: train_/val_ loss and accuracy
    per epoch; actual/predicted pairs); the energy per stage is always drawn. Plain-data arguments and result, so the
    background worker can run it while the gate judges."""
    root = Path(work_dir)
    written = []
    for picture in pictures:
        data = root / picture["data"]
        if data.is_file():
            DRAWERS[picture["kind"]](_rows(data), root / picture["picture"])
            written.append(picture["picture"])
    figures = {}
    for stage in stages:
        with contextlib.suppress(OSError, ValueError):
            record = read_json(root / layout.record_path(stage))
            figures[stage] = {**record, "measurement": summarize_methods(record.get("methods", {}).values())}
    if figures:
        energy_per_stage(figures, root / layout.ENERGY_PICTURE)
        written.append(layout.ENERGY_PICTURE.as_posix())
    return written
