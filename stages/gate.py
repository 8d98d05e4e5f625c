"""DVC stage: check every stage's record against the budgets, publish the execution to MLflow (its pictures
and model follow), and fail when over budget."""

import sys
from pathlib import Path

from carbon_budget.config import PARAMS_FILE, read_params_file
from carbon_budget.entry import stage_main
from carbon_budget.errors import BudgetExceeded
from carbon_budget.files import write_csv, write_json
from carbon_budget.gate.evidence import judge, plot_rows, render, verdict_document
from carbon_budget.measure.stage import StageRun
from carbon_budget.publish import tracking
from pipeline import layout
from pipeline.config import parse_params

OUTPUTS = [layout.GATE_METRICS, layout.ENERGY_PER_STAGE, layout.EFFICIENCY]
# the pictures drawn after the verdict, beside the energy per stage (see carbon_budget.publish.plots)
PICTURES = [
    {"kind": "curves", "data": layout.TRAINING_CURVES.as_posix(), "picture": layout.TRAINING_CURVES_PICTURE.as_posix()},
    {"kind": "confusion", "data": layout.CONFUSION.as_posix(), "picture": layout.CONFUSION_PICTURE.as_posix()},
]


def main() -> None:
    raw = read_params_file(Path(PARAMS_FILE))
    params = parse_params(raw)  # the whole file, as every stage reads it: a bad value fails here too
    work_dir = Path.cwd()
    with StageRun(
        "gate",
        ("budget", "report", "sci", "usage"),
        carbon=params.carbon,
        outputs=OUTPUTS,
        metrics_files=[layout.GATE_METRICS],
    ) as run:
        verdict, evidence = judge(params.gate(), raw, work_dir, deciding=True)
        document = verdict_document(verdict, evidence)
        write_json(layout.GATE_METRICS, document)
        per_stage, efficiency = plot_rows(document)
        write_csv(layout.ENERGY_PER_STAGE, per_stage)
        write_csv(layout.EFFICIENCY, efficiency)
        print(render(verdict, evidence))
    assert run.record is not None
    try:
        print(
            tracking.publish_execution(
                params.mlflow.experiment,
                raw,
                document,
                evidence,
                [run.record],
                work_dir,
                PICTURES,
                tracking.tracking_uri(),
            )
        )
    except tracking.PublishError as exc:
        print(f"warning: {exc}", file=sys.stderr)
    if not verdict.passed:
        raise BudgetExceeded(verdict.summary())


if __name__ == "__main__":
    stage_main(main)
