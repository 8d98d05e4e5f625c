"""DVC stage: check every stage's record against the budgets, publish the execution to MLflow (its pictures
and model follow), and fail when over budget."""

import sys
from pathlib import Path

from pipeline import layout, tracking
from pipeline.config import PARAMS_FILE, load_params
from pipeline.errors import BudgetExceeded
from pipeline.files import write_csv, write_json
from pipeline.gate import Scope, judge, plot_rows, publish, render, verdict_document
from pipeline.stage import StageRun, stage_main

OUTPUTS = [layout.GATE_METRICS, layout.ENERGY_PER_STAGE, layout.EFFICIENCY]


def main() -> None:
    params = load_params(Path(PARAMS_FILE))
    work_dir = Path.cwd()
    uri = tracking.tracking_uri()
    with StageRun("gate", params, ("budget",), outputs=OUTPUTS, metrics_files=[layout.GATE_METRICS]) as run:
        verdict, evidence = judge(Scope.of_pipeline(params), work_dir)
        document = verdict_document(verdict, evidence)
        write_json(layout.GATE_METRICS, document)
        per_stage, efficiency = plot_rows(document)
        write_csv(layout.ENERGY_PER_STAGE, per_stage)
        write_csv(layout.EFFICIENCY, efficiency)
        print(render(verdict, evidence.payback))
    assert run.record is not None
    all_params = {name: params.section(name) for name in type(params).model_fields}
    own = [run.record]
    try:
        print(
            publish(params.mlflow.experiment, all_params, document, evidence, own, work_dir, [layout.ENERGY_PNG], uri)
        )
    except tracking.PublishError as exc:
        print(f"warning: {exc}", file=sys.stderr)
    if not verdict.passed:
        raise BudgetExceeded(verdict.summary())


if __name__ == "__main__":
    stage_main(main)
