"""DVC stage: write the deployable artifacts, check each against the trained model, and write the model card."""

from pathlib import Path

from pipeline import layout
from pipeline.config import PARAMS_FILE, load_params
from pipeline.errors import RecordError
from pipeline.files import write_json, write_text_atomic
from pipeline.records import load_record
from pipeline.stage import StageRun, stage_main

BEFORE = ("preprocess", "train", "evaluate")


def main() -> None:
    params = load_params(Path(PARAMS_FILE))
    deployed_path = layout.EXPORT_DIR / layout.EXPORT_FILES[params.export.deploy]
    with StageRun(
        "export",
        params,
        ("export", "carbon"),
        outputs=[layout.EXPORT_DIR, layout.EXPORT_METRICS],
        metrics_files=[layout.EXPORT_METRICS],
        artifacts=[deployed_path, layout.MODEL_CARD, layout.INPUT_EXAMPLE],
    ) as run:
        import torch

        from pipeline import modelcard
        from pipeline.budgets import check
        from pipeline.data import load_splits
        from pipeline.export import check_artifact, write_artifacts
        from pipeline.models import count_parameters, load_model

        model, config = load_model(layout.MODEL)
        splits = load_splits(layout.PROCESSED_DATA)
        with torch.no_grad():
            reference = model(torch.from_numpy(splits.x_test)).numpy()
        paths = write_artifacts(
            model, config["in_features"], params.export.formats, layout.EXPORT_DIR, params.export.opset
        )
        checks = {
            fmt: check_artifact(
                fmt,
                path,
                reference,
                splits.x_test,
                splits.y_test,
                params.export.latency_batch_size,
                params.export.max_accuracy_drop,
            ).as_dict()
            for fmt, path in paths.items()
        }
        deployed = checks[params.export.deploy]
        parameters = count_parameters(model)
        write_json(
            layout.EXPORT_METRICS,
            {
                "deploy": {**deployed, "parameters": parameters},
                "artifacts": checks,
                "model_size_mb": deployed["size_mb"],
                "parameters": parameters,
                "reference_accuracy": float((reference.argmax(1) == splits.y_test).mean()),
            },
        )
        write_json(layout.INPUT_EXAMPLE, {"input": splits.x_test[:2].tolist()})
        records = {}
        for stage in BEFORE:
            try:
                records[stage] = load_record(layout.record_path(stage))
            except RecordError:
                continue  # the card says what it knows; the gate fails closed on missing records
        so_far = check(params.budget, records, deployed["size_mb"], None, [])
        write_text_atomic(
            layout.MODEL_CARD,
            modelcard.render(
                records,
                checks,
                params.export.deploy,
                float((reference.argmax(1) == splits.y_test).mean()),
                so_far,
                "The gate stage decides with every record (metrics/gate.json).",
            ),
        )
        run.tags.update(deploy_format=params.export.deploy, deploy_artifact=deployed_path.as_posix())
        if params.export.registered_model_name:
            run.tags["registered_model_name"] = params.export.registered_model_name


if __name__ == "__main__":
    stage_main(main)
