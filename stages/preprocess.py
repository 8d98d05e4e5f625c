"""DVC stage: load the configured data set, split it (stratified, seeded) and standardise it on train only."""

from pathlib import Path

from carbon_budget.config import PARAMS_FILE
from carbon_budget.entry import stage_main
from carbon_budget.files import write_json
from carbon_budget.measure.stage import StageRun
from pipeline import layout
from pipeline.config import load_params
from pipeline.data import load_dataset, prepare, save_splits

METRICS = Path("metrics/preprocess.json")


def main() -> None:
    params = load_params(Path(PARAMS_FILE))
    with StageRun(
        "preprocess",
        ("data", "carbon"),
        carbon=params.carbon,
        outputs=[layout.PROCESSED_DATA, METRICS],
        metrics_files=[METRICS],
    ):
        splits = prepare(load_dataset(params.data, Path.cwd()), params.data)
        save_splits(splits, layout.PROCESSED_DATA)
        write_json(
            METRICS,
            {
                "train_samples": len(splits.y_train),
                "val_samples": len(splits.y_val),
                "test_samples": len(splits.y_test),
                "features": int(splits.x_train.shape[1]),
                "classes": len(splits.classes),
            },
        )


if __name__ == "__main__":
    stage_main(main)
