"""`carbon-budget report` from start to end: judge both sides, find the noise band, compare, and write the outputs.

The band comes from the first source that can serve: the two sides remeasured side by side (`remeasure.py`), the
base branch's executions in MLflow (`history.py`), else `report.noise_pct`, said to be a default. Every file the
report reads beyond the two trees is the params file it is given, at each side.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from carbon_budget.config import MlflowParams, ReportParams, parse_section
from carbon_budget.files import write_text_atomic
from carbon_budget.report.compare import compare
from carbon_budget.report.markdown import render_markdown
from carbon_budget.report.noise import Noise
from carbon_budget.report.sides import Side, base_side, git_commit, in_project, judged_side

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"  # a GitHub Actions job's summary file: the markdown is appended to it


@dataclass(frozen=True)
class ReportRequest:
    """What `carbon-budget report` was asked for."""

    params_file: Path
    base_ref: str | None = None
    runs: int | None = None  # remeasure runs of each side; None: the params' `report` section decides
    in_pull_request: bool = False  # as the pull-request workflow runs it: `report.pull_request_remeasure`
    fmt: str = "markdown"  # what is printed and written to `output`: markdown or json
    output: Path | None = None
    json_output: Path | None = None


def report(root: Path, request: ReportRequest) -> str:
    """The report on the project at `root` in `request.fmt`, after writing it where asked (and the markdown to the
    job summary where `GITHUB_STEP_SUMMARY` names one). Raises CarbonBudgetError where a side cannot be read or a
    remeasured run fails."""
    params_file = request.params_file
    # one judge call: the verdict and the head's figures are the same figures
    current, verdict = judged_side("work tree", root, params_file)
    settings = parse_section(current.params, "report", ReportParams, str(params_file))
    base, commit = None, None
    noise = Noise.default(settings.noise_pct, str(params_file))
    if request.base_ref:
        commit = git_commit(root, request.base_ref)
        params_in_project = in_project(root, params_file)  # the same file in the base's tree
        base = base_side(request.base_ref, root, commit, params_in_project)
        runs = request.runs
        if runs is None:
            runs = settings.pull_request_remeasure if request.in_pull_request else settings.remeasure
        comparable = base.unjudged is None  # a base this version cannot judge: the report says why, no more
        if comparable and runs:
            from carbon_budget.report.remeasure import remeasure

            head_records, base_records, noise = remeasure(root, commit, runs, params_in_project, settings.noise_pct)
            # both sides as remeasured: no rerun measures the tool's own line, which is local state on one side
            # and its gate's committed figure on the other
            current = replace(current, records=head_records)
            base = replace(base, records=base_records)
        elif comparable:
            base, noise = _history(root, request, base, current, settings.noise_pct)
    document = compare(current, base, verdict, commit, noise)
    markdown = render_markdown(document)
    as_json = json.dumps(document, indent=2, sort_keys=True) + "\n"
    text = as_json if request.fmt == "json" else markdown
    if request.output is not None:
        write_text_atomic(request.output, text)
    if request.json_output is not None:
        write_text_atomic(request.json_output, as_json)
    summary = os.environ.get(STEP_SUMMARY_ENV)
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown)
    return text


def _history(root: Path, request: ReportRequest, base: Side, head: Side, default_pct: float) -> tuple[Side, Noise]:
    """The base side and band from the base branch's executions in MLflow (`history.py`), or the committed base and
    the default band, with the reason history could not serve said in the band's source."""
    from carbon_budget.layout import tracking_uri
    from carbon_budget.report.history import History, base_history, branch_of

    params_file = str(request.params_file)
    experiment = parse_section(head.params, "mlflow", MlflowParams, params_file).experiment
    branch = branch_of(root, base.label)  # the base ref it was read at
    found = base_history(tracking_uri(), experiment, branch, head.records, default_pct, params_file)
    if isinstance(found, History):
        return replace(base, records={**base.records, **found.records}), found.noise
    default = Noise.default(default_pct, params_file)
    return base, replace(default, source=f"{default.source}; no MLflow history: {found}")
