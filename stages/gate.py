"""DVC stage: check every stage's record against the budgets, publish the execution to MLflow (its pictures
and model follow), and fail when over budget: `carbon-budget gate --publish`'s decision, with this pipeline's files."""

import sys
from pathlib import Path

from carbon_budget.config import PARAMS_FILE, read_params_file
from carbon_budget.entry import stage_main
from carbon_budget.errors import BudgetExceeded
from carbon_budget.files import write_csv, write_json
from carbon_budget.gate.render import plot_rows
from carbon_budget.measure.stage import StageRun
from carbon_budget.publish.verdict import Decision, Publishing, decide
from pipeline import layout
from pipeline.config import parse_params

OUTPUTS = [layout.GATE_METRICS, layout.ENERGY_PER_STAGE, layout.EFFICIENCY]
# the pictures drawn after the verdict, beside the energy per stage (see carbon_budget.publish.plots)
PICTURES = [
    {"kind": "curves", "data": layout.TRAINING_CURVES.as_posix(), "picture": layout.TRAINING_CURVES_PICTURE.as_posix()},
    {"kind": "confusion", "data": layout.CONFUSION.as_posix(), "picture": layout.CONFUSION_PICTURE.as_posix()},
]


def write_outputs(decision: Decision) -> None:
    """The verdict for DVC (metrics, plots) and for people, written while this stage is measured."""
    write_json(layout.GATE_METRICS, decision.document)
    per_stage, efficiency = plot_rows(decision.document)
    write_csv(layout.ENERGY_PER_STAGE, per_stage)
    write_csv(layout.EFFICIENCY, efficiency)
    print(decision.table)


def main() -> None:
    raw = read_params_file(Path(PARAMS_FILE))
    params = parse_params(raw)  # the whole file, as every stage reads it: a bad value fails here too
    run = StageRun(
        "gate",
        ("budget", "report", "sci", "usage"),
        carbon=params.carbon,
        outputs=OUTPUTS,
        metrics_files=[layout.GATE_METRICS],
    )
    decision = decide(params.gate(), raw, Path.cwd(), PARAMS_FILE, write_outputs, Publishing(raw, PICTURES, run))
    if decision.published:
        print(decision.published)
    if decision.unpublished:
        print(f"warning: {decision.unpublished}", file=sys.stderr)
    if not decision.verdict.passed:
        raise BudgetExceeded(decision.verdict.summary())


if __name__ == "__main__":
    stage_main(main)
