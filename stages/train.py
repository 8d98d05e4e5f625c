"""DVC stage: train the classifier named in params and save it with the config needed to rebuild it."""

from pathlib import Path

from pipeline import layout
from pipeline.config import PARAMS_FILE, load_params
from pipeline.files import write_csv, write_json
from pipeline.stage import StageRun, stage_main


def main() -> None:
    params = load_params(Path(PARAMS_FILE))
    with StageRun(
        "train",
        params,
        ("model", "train", "carbon"),
        outputs=[layout.MODEL, layout.TRAINING_CURVES, layout.TRAIN_METRICS],
        metrics_files=[layout.TRAIN_METRICS],
        artifacts=[layout.MODEL, layout.TRAINING_CURVES_PNG],
    ):
        # torch is imported inside the measured block: its import is part of what this stage costs.
        from pipeline.data import load_splits
        from pipeline.models import build_model, count_parameters, model_config, save_model
        from pipeline.training import pick_device, train_model

        splits = load_splits(layout.PROCESSED_DATA)
        device = pick_device(params.train.device)
        config = model_config(params.model, splits.x_train.shape[1], len(splits.classes), splits.image_shape)
        model = build_model(config)
        history = [epoch.as_row() for epoch in train_model(model, splits, params.train, device)]
        save_model(layout.MODEL, model, config)
        write_csv(layout.TRAINING_CURVES, history)
        write_json(
            layout.TRAIN_METRICS,
            {
                **{k: v for k, v in history[-1].items() if k != "epoch"},
                "epochs_run": len(history),
                "parameters": count_parameters(model),
                "device": device.type,
            },
        )


if __name__ == "__main__":
    stage_main(main)
