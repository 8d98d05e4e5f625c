"""Measure base and head side by side on this machine: the noise band of the pull-request report, first choice.

`carbon-budget report --base REF --remeasure N` checks the base and this revision (HEAD plus the work tree's
uncommitted changes) out into temporary git worktrees that share this project's DVC cache, and reruns the
measured stages (`dvc repro --force`) of each, alternating base and head N times so the host's drift hits both
alike. Each side's figure is its median run (the run whose total energy is the median, so its stages still add
up to its total); the noise band of each figure is the relative range of the base's runs plus the head's (two
medians of a few noisy runs each can lie that far apart with no change at all). Each run's records are the
stages that side's own gate owes, as it judges them after the run: a run that leaves any of them failed or
unwritten fails the remeasure (over budget is a figure like any other).
Remeasured runs publish to a throwaway MLflow store, not the team's, in their gate's own process.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.gate.evidence import judge_file
from carbon_budget.report.noise import Noise, spread_pct


def _git(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True)
    if done.returncode != 0:
        raise CarbonBudgetError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _worktree(root: Path, where: Path, commit: str) -> None:
    _git(root, "worktree", "add", "--detach", "--force", str(where), commit)
    dvc = shutil.which("dvc") or "dvc"
    # the project's own cache: outputs and data are shared, not downloaded or rebuilt from nothing
    subprocess.run(
        [dvc, "config", "--local", "cache.dir", str((root / ".dvc" / "cache").resolve())],
        cwd=where,
        capture_output=True,
        check=False,
    )
    subprocess.run([dvc, "checkout", "--quiet"], cwd=where, capture_output=True, check=False)


class RemeasureFailed(CarbonBudgetError):
    """A side's `dvc repro` did not leave a record of every stage its gate owes: no figure of it is a measurement."""


# publish.worker's switch (a layer above this one): remeasured runs start no background worker, which would
# outlive its run and still write into a worktree being deleted
WORKER_SWITCH = "CARBON_BUDGET_WORKER"
TAIL_LINES = 15  # of `dvc repro`'s output, enough to show which stage failed and why


def _run(where: Path, params_file: Path, env: dict[str, str], what: str) -> dict[str, dict[str, Any]]:
    """One forced run of the pipeline in `where`, then its records as its own gate judges them (the stages that
    revision owes). Over budget is a figure like any other; a stage that failed, or never ran, fails the remeasure."""
    for stale in (where / layout.RECORDS_DIR).glob("*.json"):
        stale.unlink()  # the records git checked out are not this run's: a stage that never runs must leave none
    done = subprocess.run(
        [shutil.which("dvc") or "dvc", "repro", "--force"],
        cwd=where,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # the tool's own line there is the cost of publishing to the throwaway store: no revision's, and not judged
    (where / layout.ITSELF_RECORD).unlink(missing_ok=True)
    verdict, evidence = judge_file(where / params_file, where)
    if verdict.problems:
        tail = "\n".join(done.stdout.rstrip().splitlines()[-TAIL_LINES:])
        raise RemeasureFailed(
            f"remeasuring {what} failed (`dvc repro --force` exited {done.returncode}), so nothing was compared:\n"
            + "\n".join(f"  - {problem}" for problem in verdict.problems)
            + f"\nlast lines of `dvc repro --force`:\n{tail}"
        )
    return {name: r.model_dump(mode="json") for name, r in evidence.records.items() if name != layout.ITSELF}


def _median_run(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    totals = [sum(r.get("energy_kwh", 0.0) for r in run.values()) for run in runs]
    middle = statistics.median_low(totals)
    return runs[totals.index(middle)]


def _spreads(runs: list[dict[str, dict[str, Any]]]) -> dict[str, float]:
    spreads = {"total.energy_kwh": spread_pct([sum(r["energy_kwh"] for r in run.values()) for run in runs])}
    spreads["total.co2_kg"] = spread_pct([sum(r["co2_kg"] for r in run.values()) for run in runs])
    for stage in runs[0]:
        for key in ("energy_kwh", "co2_kg", "duration_s"):
            values = [run[stage][key] for run in runs if stage in run]
            spreads[f"{stage}.{key}"] = spread_pct(values)
    return spreads


def _remove(root: Path, tmp: Path, places: dict[str, Path]) -> None:
    """Take the worktrees away, then the folder, even where something late still wrote into it: git forgets the
    worktrees whatever is left on disk."""
    for place in places.values():
        subprocess.run(["git", "worktree", "remove", "--force", str(place)], cwd=root, capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True)


def remeasure(
    root: Path,
    base_commit: str,
    runs: int,
    params_file: Path,
    default_pct: float,
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], Noise]:
    """(head's median records, base's median records, the noise band), from `runs` alternated runs of each; each
    side's records are the stages its own gate owes (`params_file`, relative to the project root, at that side).

    Raises RemeasureFailed when a run leaves no record of a stage its gate owes (a stage failed, or never ran)."""
    if runs < 1:
        raise CarbonBudgetError(f"--remeasure {runs}: give at least 1 run of each side")
    tmp = Path(tempfile.mkdtemp(prefix="carbon-budget-remeasure-"))
    places = {"base": tmp / "base", "head": tmp / "head"}
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", WORKER_SWITCH: "off"}
    env.pop("DVC_ROOT", None)
    try:
        _worktree(root, places["base"], base_commit)
        _worktree(root, places["head"], "HEAD")
        patch = _git(root, "diff", "HEAD", "--binary")
        if patch.strip():  # this revision is the work tree, uncommitted changes included
            _git(places["head"], "apply", "--whitespace=nowarn", stdin=patch)
        measured: dict[str, list[dict[str, dict[str, Any]]]] = {"base": [], "head": []}
        for index in range(runs):
            order = ("base", "head") if index % 2 == 0 else ("head", "base")
            for side in order:
                progress(f"remeasure {index + 1}/{runs}: {side} ...")
                measured[side].append(_run(places[side], params_file, env, f"{side} (run {index + 1} of {runs})"))
    finally:
        _remove(root, tmp, places)
    # the two sides' spreads added: two medians of a few noisy runs each can lie that far apart with no change
    spreads: dict[str, float] = {}
    for side in ("base", "head"):
        for name, value in _spreads(measured[side]).items():
            spreads[name] = spreads.get(name, 0.0) + value
    source = (
        f"remeasured side by side on this machine: base and head alternated {runs} time(s), medians compared; band ="
        f" the spread of the base's runs plus the head's, never under {params_file} report.noise_pct"
        f" ({default_pct:g} %)"
    )
    return _median_run(measured["head"]), _median_run(measured["base"]), Noise(source, default_pct, spreads)
