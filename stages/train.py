"""DVC stage: train the classifier named in params under its energy budget, as a team's own loop would
(`TrainingBudget`: it forecasts the energy and stops before the budget is blown)."""

from collections.abc import Callable
from pathlib import Path

from carbon_budget.config import PARAMS_FILE
from carbon_budget.entry import stage_main
from carbon_budget.files import write_csv, write_json
from carbon_budget.layout import record_path
from carbon_budget.measure.stage import StageRun
from carbon_budget.measure.training import BUDGET_STOP, TrainingBudget
from pipeline import distributed, layout
from pipeline.config import Params, load_params
from pipeline.distributed import TrainingOutcome


def train_here(params: Params, on_epoch: Callable[[int], str | None]) -> TrainingOutcome:
    """Train in this process; torch is imported here, inside the measured block: its import is this stage's cost."""
    from pipeline.data import load_splits
    from pipeline.models import build_model, count_parameters, model_config, save_model
    from pipeline.training import pick_device, train_model

    splits = load_splits(layout.PROCESSED_DATA)
    device = pick_device(params.train.device)
    config = model_config(params.model, splits.x_train.shape[1], len(splits.classes), splits.image_shape)
    model = build_model(config, seed=params.train.seed)
    result = train_model(model, splits, params.train, device, on_epoch=lambda epoch: on_epoch(epoch.epoch))
    if result.stopped_by != BUDGET_STOP:  # a model stopped for its budget is not passed on as trained
        save_model(layout.MODEL, model, config)
    history = [epoch.as_row() for epoch in result.history]
    return TrainingOutcome(history, result.stopped_by, count_parameters(model), device.type)


def main() -> None:
    params = load_params(Path(PARAMS_FILE))
    settings, node_run = params.train.distributed, None
    nodes = distributed.node_count(settings) if settings.enabled else 1
    run = StageRun(
        "train",
        ("model", "train", "carbon"),
        carbon=params.carbon,
        outputs=[layout.MODEL, layout.TRAINING_CURVES, layout.TRAIN_METRICS],
        metrics_files=[layout.TRAIN_METRICS],
        artifacts=[layout.MODEL, layout.TRAINING_CURVES_PICTURE],
        forecasts=True,
    )
    try:
        # budget and forecast are not DVC params of this stage: they decide whether training may go on, not what
        # the model is, so changing a budget never retrains a model that already fits it.
        with run, TrainingBudget(params.train.epochs, run=run, forecast=params.forecast, nodes=nodes) as budget:

            def on_epoch(epoch: int) -> str | None:
                return BUDGET_STOP if budget.end_epoch(epoch) else None

            if settings.enabled:
                node_run = distributed.launch(settings, on_epoch, layout.MODEL)
                if node_run.outcome is None:
                    return  # global rank 0 trained on another node, whose stage writes the model and metrics
                outcome = node_run.outcome
                run.extra_metrics.update(workers_cpu_s=node_run.workers_cpu_s, nodes=nodes)
            else:
                outcome = train_here(params, on_epoch)
            budget.epochs_run, budget.stopped_by = len(outcome.history), outcome.stopped_by
            write_csv(layout.TRAINING_CURVES, outcome.history)
            last = {k: v for k, v in outcome.history[-1].items() if k != "epoch"}
            figures = {"parameters": outcome.parameters, "device": outcome.device, "stopped_by": outcome.stopped_by}
            write_json(layout.TRAIN_METRICS, {**last, **figures, **run.extra_metrics, **budget.outcome()[0]})
    finally:
        if node_run is not None and run.record is not None:
            distributed.account_nodes(settings, run.record, record_path("train"), node_run)


if __name__ == "__main__":
    stage_main(main)
