"""The base branch's own executions in the team's MLflow store: the noise band of the pull-request report,
second choice (after remeasuring side by side, before the default).

Every stage run carries the fingerprint of what measured it (`tags.TAG_FINGERPRINT`) and every parent run its
branch (`git.branch`). When the store holds at least `LEAST` executions of the base branch whose run of a stage
was measured exactly as this revision's record of it, that stage's base figure is their median and its band the
99 % prediction interval of one more run (Student's t over their spread): the base measured on the same kind of
machine as the head, by the workflow's own runs on the base branch (docs/pr-report.md), instead of the figures a
developer's laptop committed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from carbon_budget.config import PARAMS_FILE
from carbon_budget.layout import ITSELF
from carbon_budget.publish.redact import redact
from carbon_budget.publish.runs import open_client
from carbon_budget.publish.store import sqlite_path
from carbon_budget.publish.tags import (
    ITSELF_METRIC,
    TAG_FINGERPRINT,
    TAG_GIT_BRANCH,
    TAG_METHOD,
    TAG_PARENT_RUN,
    TAG_RECORD,
    TAG_STAGE,
)
from carbon_budget.records.fingerprint import fingerprint_id
from carbon_budget.report.noise import Noise, prediction_band_pct

LEAST = 3  # executions of the base branch, measured alike, before their spread says anything
LATEST = 10  # the most recent executions looked at: older ones measured an older host


@dataclass(frozen=True)
class History:
    """The base side read from MLflow: a record-like dict per stage (median figures) and the band."""

    records: dict[str, dict[str, Any]]
    noise: Noise


def branch_of(root: Path, ref: str) -> str:
    """The branch a base ref names, as parent runs record it (`origin/main` -> `main`)."""
    remotes = subprocess.run(["git", "remote"], cwd=root, capture_output=True, text=True).stdout.split()
    for remote in remotes:
        if ref.startswith(f"{remote}/"):
            return ref[len(remote) + 1 :]
    return ref.removeprefix("refs/heads/")


def _runs(client: Any, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(client.search_runs([found.experiment_id], max_results=2000, order_by=["attributes.start_time DESC"]))


def _itself_run(parent: Any) -> Any:
    """A parent run's `carbon_budget_itself.*` figures, shaped as a stage's run: the tool's line has history too."""
    metrics = {
        key[len(ITSELF_METRIC) :]: value for key, value in parent.data.metrics.items() if key.startswith(ITSELF_METRIC)
    }
    return SimpleNamespace(data=SimpleNamespace(metrics=metrics, tags={TAG_PARENT_RUN: parent.info.run_id}))


def _total_band(
    found: dict[str, list[Any]], head: dict[str, dict[str, Any]], key: str, bands: dict[str, float]
) -> float:
    """The band of the stages' sum: from the executions that ran every one of them (their totals), else the
    stages' `bands` weighted by their share of the head's total (as if they all drifted together)."""
    by_parent: dict[str, dict[str, float]] = {}
    for stage, runs in found.items():
        for run in runs:
            if key in run.data.metrics:
                by_parent.setdefault(run.data.tags[TAG_PARENT_RUN], {})[stage] = run.data.metrics[key]
    totals = [sum(values.values()) for values in by_parent.values() if len(values) == len(found)]
    if len(totals) >= LEAST:
        return prediction_band_pct(totals)
    weights = {stage: head[stage].get(key) or 0.0 for stage in found}
    whole = sum(weights.values())
    return sum(bands[f"{stage}.{key}"] * w for stage, w in weights.items()) / whole if whole else 0.0


def base_history(
    uri: str,
    experiment: str,
    branch: str,
    head: dict[str, dict[str, Any]],
    default_pct: float,
    params_file: str = PARAMS_FILE,
) -> History | str:
    """The base side and its band from `branch`'s executions in MLflow, or why there is none (a line to show);
    `default_pct` is `params_file`'s `report.noise_pct`, the narrowest band."""
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        return f"no MLflow store at {redact(uri)}"
    try:
        runs = _runs(open_client(uri), experiment)
    except Exception as exc:  # MLflow raises many types (connection, locked db, REST errors)
        return f"MLflow at {redact(uri)} could not be read ({type(exc).__name__}: {redact(str(exc), uri)[:200]})"
    parents = {r.info.run_id for r in runs if r.data.tags.get(TAG_GIT_BRANCH) == branch}
    wanted = {stage: fingerprint_id(record) for stage, record in head.items() if stage != ITSELF}
    values: dict[str, list[Any]] = {}
    for run in runs:
        tags = run.data.tags
        stage = tags.get(TAG_STAGE)
        if tags.get(TAG_PARENT_RUN) not in parents or stage not in wanted:
            continue
        if tags.get(TAG_FINGERPRINT) == wanted[stage] and len(values.setdefault(stage, [])) < LATEST:
            values[stage].append(run)
    if ITSELF in head:  # the tool's own cost is on the parent runs of the executions measured alike
        alike = {run.data.tags[TAG_PARENT_RUN] for found in values.values() for run in found}
        values[ITSELF] = [
            _itself_run(run)
            for run in runs
            if run.info.run_id in alike and f"{ITSELF_METRIC}energy_kwh" in run.data.metrics
        ][:LATEST]
    enough = {stage: found for stage, found in values.items() if len(found) >= LEAST}
    if not enough:
        most = max((len(v) for v in values.values()), default=0)
        return (
            f"MLflow holds {most} execution(s) of branch {branch!r} measured like this revision"
            f" (at least {LEAST} needed)"
        )
    records, spreads = {}, {}
    for stage, found in enough.items():
        by_energy = sorted(found, key=lambda r: r.data.metrics.get("energy_kwh", 0.0))
        middle = by_energy[(len(by_energy) - 1) // 2]  # the low median: a run that happened, its figures together
        metrics = middle.data.metrics
        records[stage] = {
            "record_id": middle.data.tags.get(TAG_RECORD),
            **{key: metrics.get(key) for key in ("energy_kwh", "co2_kg", "duration_s")},
            "extra_metrics": {k: metrics[k] for k in ("cpu_s", "epochs_run") if k in metrics},
            "methods": {k[len(TAG_METHOD) :]: v for k, v in middle.data.tags.items() if k.startswith(TAG_METHOD)},
        }
        for key in ("energy_kwh", "co2_kg", "duration_s"):
            # the head is one more run of what the base's runs measured: where may it land by chance?
            spreads[f"{stage}.{key}"] = prediction_band_pct(
                [r.data.metrics[key] for r in found if key in r.data.metrics]
            )
    for key in ("energy_kwh", "co2_kg"):
        spreads[f"total.{key}"] = _total_band(enough, head, key, spreads)
    counts = ", ".join(f"{s} {len(v)}" for s, v in sorted(enough.items()))
    source = (
        f"MLflow history: the latest executions of branch {branch!r} measured like this revision ({counts}),"
        " medians as the base; band = the 99 % prediction interval of one more run from theirs, never under"
        f" {params_file} report.noise_pct ({default_pct:g} %)"
    )
    return History(records, Noise(source, default_pct, spreads))
