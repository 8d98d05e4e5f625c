"""DVC stage: score the trained model on the held-out test split."""

from pathlib import Path

from carbon_budget.config import PARAMS_FILE
from carbon_budget.entry import stage_main
from carbon_budget.files import write_csv, write_json
from carbon_budget.measure.stage import StageRun
from pipeline import layout
from pipeline.config import load_params


def main() -> None:
    params = load_params(Path(PARAMS_FILE))
    outputs = [layout.EVALUATE_METRICS, layout.PER_CLASS_REPORT, layout.CONFUSION]
    with StageRun(
        "evaluate",
        ("carbon",),
        carbon=params.carbon,
        outputs=outputs,
        metrics_files=[layout.EVALUATE_METRICS],
        artifacts=[layout.CONFUSION_PICTURE, layout.PER_CLASS_REPORT],
    ):
        import torch

        from pipeline.data import load_splits
        from pipeline.evaluation import classification_metrics
        from pipeline.models import load_model

        splits = load_splits(layout.PROCESSED_DATA)
        model, _ = load_model(layout.MODEL)
        with torch.no_grad():
            predicted = model(torch.from_numpy(splits.x_test)).argmax(1).numpy()
        report = classification_metrics(splits.y_test, predicted, splits.classes)
        write_json(
            layout.EVALUATE_METRICS,
            {
                "test_accuracy": report["accuracy"],
                "test_macro_f1": report["macro_f1"],
                "test_samples": len(splits.y_test),
            },
        )
        write_json(layout.PER_CLASS_REPORT, report["per_class"])
        write_csv(
            layout.CONFUSION,
            [
                {"actual": splits.classes[a], "predicted": splits.classes[p]}
                for a, p in zip(splits.y_test, predicted, strict=True)
            ],
        )


if __name__ == "__main__":
    stage_main(main)
