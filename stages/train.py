"""DVC stage: train the classifier named in params, forecasting its energy and stopping before it blows the budget."""

import sys
from pathlib import Path

from carbon_budget.config import PARAMS_FILE
from carbon_budget.entry import stage_main
from carbon_budget.errors import ForecastOverrun, RecordError
from carbon_budget.files import write_csv, write_json
from carbon_budget.layout import record_path
from carbon_budget.measure.forecast import Forecaster, training_budget_kwh
from carbon_budget.measure.stage import StageRun
from carbon_budget.records.record import load_record
from pipeline import layout
from pipeline.config import load_params


def spent_before_kwh() -> float:
    """What preprocess cost; without its record the total budget is all there is to go by."""
    try:
        return load_record(record_path("preprocess")).energy_kwh
    except RecordError:
        return 0.0


def write_outputs(
    run: StageRun, history: list[dict[str, float]], stopped_by: str, parameters: int, device: str
) -> None:
    """The curves and the metrics, the same whether one process trained or many."""
    write_csv(layout.TRAINING_CURVES, history)
    write_json(
        layout.TRAIN_METRICS,
        {
            **{k: v for k, v in history[-1].items() if k != "epoch"},
            "epochs_run": len(history),
            "parameters": parameters,
            "device": device,
            "stopped_by": stopped_by,
            **run.extra_metrics,
        },
    )


def main() -> None:
    params = load_params(Path(PARAMS_FILE))
    # budget and forecast are not DVC params of this stage: they decide whether training may go on, not what
    # the model is, so changing a budget never retrains a model that already fits it.
    stage_budget = params.budget.stages.get("train")
    budget_kwh = training_budget_kwh(
        stage_budget.energy_kwh if stage_budget else None, params.budget.energy_kwh, spent_before_kwh()
    )
    settings, nodes, node_run = params.train.distributed, 1, None
    if settings.enabled:
        from pipeline import distributed

        nodes = distributed.node_count(settings)
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
        with run:
            forecaster = Forecaster(
                params.train.epochs,
                params.forecast.warmup_epochs,
                budget_kwh,
                run.intensity_g_per_kwh,
                params.forecast.sample_every_s,
                params.forecast.min_window_s,
            )

            def check_forecast(epoch: int) -> str | None:
                # every node does the same work, so the run costs this node's energy times the nodes
                forecast = forecaster.observe(epoch, lambda: run.energy_kwh() * nodes)
                if forecast is None or not forecast.over_budget:
                    return None
                if params.forecast.on_overrun == "abort":
                    return "budget_forecast" if forecaster.overrun_confirmed() else None
                if forecaster.warn_once():
                    print(
                        f"warning: train: {forecast.message()}; continuing (forecast.on_overrun: warn)", file=sys.stderr
                    )
                return None

            if settings.enabled:
                node_run = distributed.launch(settings, check_forecast, layout.MODEL)
                if node_run.outcome is None:
                    return  # global rank 0 trained on another node, whose stage writes the model and metrics
                history, stopped_by = node_run.outcome.history, node_run.outcome.stopped_by
                parameters, device = node_run.outcome.parameters, node_run.outcome.device
                run.extra_metrics.update(workers_cpu_s=node_run.workers_cpu_s, nodes=nodes)
            else:
                # torch is imported inside the measured block: its import is part of what this stage costs.
                from pipeline.data import load_splits
                from pipeline.models import build_model, count_parameters, model_config, save_model
                from pipeline.training import pick_device, train_model

                splits = load_splits(layout.PROCESSED_DATA)
                torch_device = pick_device(params.train.device)
                config = model_config(params.model, splits.x_train.shape[1], len(splits.classes), splits.image_shape)
                model = build_model(config, seed=params.train.seed)
                result = train_model(
                    model, splits, params.train, torch_device, on_epoch=lambda epoch: check_forecast(epoch.epoch)
                )
                history, stopped_by = [epoch.as_row() for epoch in result.history], result.stopped_by
                parameters, device = count_parameters(model), torch_device.type
                if stopped_by != "budget_forecast":  # a model stopped for its budget is not passed on as trained
                    save_model(layout.MODEL, model, config)
            run.extra_metrics.update(forecaster.figures())
            run.extra_metrics.update(epochs_run=len(history), training_budget_kwh=budget_kwh)
            run.tags.update(stopped_by=stopped_by, forecast_policy=params.forecast.on_overrun)
            write_outputs(run, history, stopped_by, parameters, device)
            if stopped_by == "budget_forecast":
                assert forecaster.latest is not None
                raise ForecastOverrun(
                    f"train: {forecaster.latest.message()} (params.yaml "
                    f"{'budget.stages.train.energy_kwh' if stage_budget else 'budget.energy_kwh'};"
                    " forecast.on_overrun: abort)"
                )
    finally:
        if node_run is not None and run.record is not None:
            distributed.account_nodes(settings, run.record, record_path("train"), node_run)


if __name__ == "__main__":
    stage_main(main)
