"""The pictures: SVG written by hand, so what each shape shows is checked here, figure by figure."""

from __future__ import annotations

import csv
import itertools
import re
from pathlib import Path
from typing import Any
from xml.dom import minidom

import pytest

from carbon_budget import layout
from carbon_budget.files import write_json
from carbon_budget.publish import plots


def shapes(path: Path, tag: str) -> list[minidom.Element]:
    return list(minidom.parse(str(path)).getElementsByTagName(tag))


def tip(element: minidom.Element) -> str:
    titles = element.getElementsByTagName("title")
    return titles[0].firstChild.data if titles else ""  # type: ignore[union-attr]


def texts(path: Path) -> list[str]:
    return [t.firstChild.data for t in shapes(path, "text") if t.firstChild]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("low", "high"), [(0, 0.00524), (0.6, 1.0), (1, 20), (0, 1), (-3.2, 7.9), (5, 5), (0, 0), (1e-9, 3e-9)]
)
def test_ticks_are_round_values_that_cover_the_range(low: float, high: float) -> None:
    values = plots.ticks(low, high)
    assert values[0] <= low and values[-1] >= high and values[-1] > values[0]
    steps = {round(b - a, 15) for a, b in itertools.pairwise(values)}
    assert len(steps) == 1 and 2 <= len(values) <= 12
    mantissa = float(f"{steps.pop():e}".split("e")[0])
    assert mantissa in (1.0, 2.0, 2.5, 5.0)


def test_energy_bars_are_in_proportion_and_each_label_is_the_sum_of_its_parts(tmp_path: Path) -> None:
    stages: dict[str, dict[str, Any]] = {
        "preprocess": {
            "cpu_energy_kwh": 1e-6,
            "gpu_energy_kwh": 0.0,
            "ram_energy_kwh": 2e-7,
            "measurement": "estimated",
        },
        "train": {"cpu_energy_kwh": 4e-6, "gpu_energy_kwh": 3e-6, "ram_energy_kwh": 1e-6, "measurement": "measured"},
    }
    path = tmp_path / "energy.svg"
    plots.energy_per_stage(stages, path)
    bars = {tip(r): float(r.getAttribute("width")) for r in shapes(path, "rect") if tip(r)}
    assert set(bars) == {
        f"{s} {c}: {stages[s][f'{c.lower()}_energy_kwh'] * 1000:.3g} Wh" for s in stages for c in ("CPU", "GPU", "RAM")
    }
    widths = {key.split(":")[0]: width for key, width in bars.items()}
    px_per_wh = widths["train CPU"] / 4e-3
    for key, width in widths.items():
        stage, component = key.split()
        assert width == pytest.approx(stages[stage][f"{component.lower()}_energy_kwh"] * 1000 * px_per_wh, abs=0.11)
    labels = [t for t in texts(path) if t.endswith("ed)")]
    assert labels == ["0.0012 Wh (estimated)", "0.008 Wh (measured)"]


def test_confusion_cells_hold_the_counts_of_each_pair(tmp_path: Path) -> None:
    pairs = [{"actual": "2", "predicted": "2"}] * 3 + [{"actual": "10", "predicted": "2"}]
    path = tmp_path / "confusion.svg"
    plots.confusion_matrix(pairs, path)
    cells = {tip(r) for r in shapes(path, "rect") if tip(r)}
    assert cells == {
        "actual 2, predicted 2: 3",
        "actual 2, predicted 10: 0",
        "actual 10, predicted 2: 1",
        "actual 10, predicted 10: 0",
    }
    assert texts(path)[:2] == ["2", "2"]  # natural order: 2 before 10


def test_training_curves_draw_each_series_through_every_epoch(tmp_path: Path) -> None:
    rows = [
        {
            "epoch": e,
            "train_loss": 2 / e,
            "val_loss": 2.2 / e,
            "train_accuracy": 1 - 1 / (e + 1),
            "val_accuracy": 1 - 1.2 / (e + 1),
        }
        for e in range(1, 8)
    ]
    path = tmp_path / "curves.svg"
    plots.training_curves(rows, path)
    lines = shapes(path, "polyline")
    assert len(lines) == 4
    for line in lines:
        points = [tuple(map(float, p.split(","))) for p in line.getAttribute("points").split()]
        assert len(points) == 7 and [x for x, _ in points] == sorted(x for x, _ in points)
    loss = [y for _, y in (tuple(map(float, p.split(","))) for p in lines[0].getAttribute("points").split())]
    assert loss == sorted(loss)  # falling loss: larger y on screen is lower on the chart, so the y grow


def test_draw_execution_writes_the_project_pictures_and_the_energy_of_each_recorded_stage(tmp_path: Path) -> None:
    (tmp_path / "plots").mkdir()
    with (tmp_path / "plots/pairs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["actual", "predicted"])
        writer.writeheader()
        writer.writerow({"actual": "a", "predicted": "b"})
    record = {
        "cpu_energy_kwh": 1e-6,
        "gpu_energy_kwh": 0.0,
        "ram_energy_kwh": 1e-7,
        "methods": {"cpu": "measured:rapl"},
    }
    write_json(tmp_path / layout.record_path("train"), record)
    pictures = [
        {"kind": "confusion", "data": "plots/pairs.csv", "picture": "plots/pairs.svg"},
        {"kind": "curves", "data": "plots/absent.csv", "picture": "plots/curves.svg"},
    ]
    written = plots.draw_execution(str(tmp_path), ["train", "never-ran"], pictures)
    assert written == ["plots/pairs.svg", layout.ENERGY_PICTURE.as_posix()]
    energy = (tmp_path / layout.ENERGY_PICTURE).read_text()
    assert re.search(r">train<", energy) and "never-ran" not in energy and "(measured)" in energy
