"""The two sides of a pull-request report, each as its own gate judges it: the work tree with the verdict's very
figures (`judged_side`), and the base with its own stages, params and budgets (`base_side`), so a change cannot look
cheaper by counting less.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.config import SciParams, UsageParams, parse_section, read_params_file
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.gate import evidence as gating
from carbon_budget.gate.budgets import Verdict
from carbon_budget.gate.footprint import Footprint, footprint

# the report's SCI figures (g CO2-eq per functional unit), by the footprint's score they read
SCI_FIGURES = {"sci_g_per_run": "training", "sci_g_per_1k_predictions": "inference"}


@dataclass(frozen=True)
class Side:
    """What one revision says: its params, each stage's record, and the model's figures."""

    label: str
    params: dict[str, Any]
    records: dict[str, dict[str, Any]]
    export: dict[str, Any] = field(default_factory=dict)
    unjudged: str | None = None  # why this version could not judge the revision (then it has no records)
    # metrics/gate.json's `carbon_aware` and `cleaner_window` (gate/shifting.py): when its stages ran under a wait,
    # and where a CO2 budget exceeded now would have held
    carbon_aware: dict[str, Any] | None = None
    cleaner_window: dict[str, Any] | None = None

    def total(self, key: str) -> float | None:
        values = [r.get(key) for r in self.records.values()]
        numbers = [v for v in values if isinstance(v, int | float)]
        return sum(numbers) if numbers else None

    def figure(self, name: str) -> float | None:
        value = {
            "energy_kwh": self.total("energy_kwh"),
            "co2_kg": self.total("co2_kg"),
            "duration_s": self.total("duration_s"),
            "model_size_mb": self.export.get("model_size_mb"),
            "parameters": self.export.get("parameters"),
            "test_accuracy": self.accuracy(),
            "energy_kwh_per_1k_predictions": self.inference("energy_per_1k_predictions_kwh"),
            "co2_kg_per_1k_predictions": _scaled(self.inference("co2_per_1k_predictions_g"), 1e-3),
        }.get(name)
        if name in SCI_FIGURES:
            score = getattr(self.footprint, SCI_FIGURES[name])
            value = score.sci_g if score is not None else None
        if name == "accuracy_per_kwh":
            accuracy, energy = self.figure("test_accuracy"), self.figure("energy_kwh")
            value = accuracy / energy if accuracy is not None and energy else None
        return float(value) if isinstance(value, int | float) else None

    @cached_property
    def footprint(self) -> Footprint:
        """This revision's SCI scores and lifetime, from its own records, export metrics and params."""
        source = f"the params file at {self.label}"
        return footprint(
            self.records,
            (self.export.get("deploy") or {}).get("inference"),
            parse_section(self.params, "sci", SciParams, source),
            parse_section(self.params, "usage", UsageParams, source).predictions,
        )

    def inference(self, key: str) -> Any:
        """A figure of the deployed model's measured energy per prediction (export's `deploy.inference`)."""
        return ((self.export.get("deploy") or {}).get("inference") or {}).get(key)

    def accuracy(self) -> Any:
        """The accuracy of the model that ships: its deployed artifact's own, as the gate judges it."""
        return (self.export.get("deploy") or {}).get("accuracy")


def _scaled(value: Any, factor: float) -> Any:
    return value * factor if isinstance(value, int | float) else None


def git_commit(root: Path, ref: str) -> str:
    """The commit `ref` names; raises CarbonBudgetError when git does not know the ref."""
    resolved = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=root, capture_output=True, text=True
    )
    if resolved.returncode != 0:
        raise CarbonBudgetError(f"git does not know the base {ref!r} (fetch it first, e.g. `git fetch origin main`)")
    return resolved.stdout.strip()


def in_project(root: Path, path: Path) -> Path:
    """`path` (the `--params` file) relative to the project root: the same file is then found in any revision's
    tree, the base's included."""
    if not path.is_absolute():
        return path
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        raise CarbonBudgetError(f"{path} is not inside the project at {root}: the base has no such file") from None


@contextmanager
def tree_of(root: Path, commit: str) -> Iterator[Path]:
    """`commit`'s files in a temporary folder, removed afterwards. `git archive` takes no lock and leaves no
    worktree behind in the repository, and the gate needs nothing DVC caches to total a revision's records."""
    with tempfile.TemporaryDirectory(prefix="carbon-budget-base-") as tmp:
        archive = subprocess.Popen(["git", "archive", "--format=tar", commit], cwd=root, stdout=subprocess.PIPE)
        assert archive.stdout is not None
        try:
            with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
                tar.extractall(tmp, filter="data")
        except tarfile.TarError as exc:
            raise CarbonBudgetError(f"cannot read the files of {commit[:10]}: {exc}") from None
        finally:
            archive.stdout.close()
            if archive.wait() != 0:
                raise CarbonBudgetError(f"`git archive {commit[:10]}` failed (exit {archive.returncode})")
        yield Path(tmp)


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def judged_side(label: str, root: Path, params_file: Path) -> tuple[Side, Verdict]:
    """A revision as its own gate judges it: the stages, params and budgets of the files under `root` (its params
    at `params_file`), one judge call whose records are both the verdict's figures and the report's (the tool's
    own line included)."""
    verdict, evidence = gating.judge_file(params_file, root)
    raw = read_params_file(params_file)
    records = {name: record.model_dump(mode="json") for name, record in evidence.records.items()}
    window = evidence.cleaner_window.as_dict() if evidence.cleaner_window else None
    export = _json(root / layout.DEPLOY_METRICS)
    return Side(label, raw, records, export, carbon_aware=evidence.carbon_aware, cleaner_window=window), verdict


def base_side(label: str, root: Path, commit: str, params_file: Path) -> Side:
    """The base judged with its own dvc.yaml, params file and budgets, as committed at `commit`: its total is its
    own gate's. Its tool's own line and the wait its stages ran under are local state, never committed: what its gate
    counted (`metrics/gate.json`) stands in. A base this version cannot judge (no gate stage yet, params it rejects)
    is compared with nothing, and says why."""
    with tree_of(root, commit) as tree:
        try:
            side, _ = judged_side(label, tree, tree / params_file)
        except CarbonBudgetError as exc:
            try:
                params = read_params_file(tree / params_file, missing_ok=True)
            except CarbonBudgetError:
                params = {}
            return Side(label, params, {}, unjudged=str(exc))
        committed = _json(tree / layout.GATE_METRICS)
    itself = (committed.get("stages") or {}).get(layout.ITSELF)
    if isinstance(committed.get("carbon_aware"), dict):
        side = replace(side, carbon_aware=committed["carbon_aware"])
    if isinstance(itself, dict) and layout.ITSELF not in side.records:
        return replace(side, records={**side.records, layout.ITSELF: itself})
    return side
