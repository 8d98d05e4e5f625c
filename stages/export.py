"""DVC stage: write the deployable artifacts, check each against the trained model, and write the model card.

The model exported is the teacher, or the distilled student that params choose; a student is also compared
with its teacher in the same format, so the report can say what distillation bought."""

import tempfile
from pathlib import Path
from typing import Any

from carbon_budget.config import PARAMS_FILE
from carbon_budget.entry import stage_main
from carbon_budget.errors import RecordError
from carbon_budget.files import write_json, write_text_atomic
from carbon_budget.gate.budgets import check, vouch
from carbon_budget.layout import record_path
from carbon_budget.measure.stage import StageRun
from carbon_budget.records.record import EmissionRecord, file_md5, load_record
from pipeline import layout
from pipeline.config import Params, load_params

BEFORE = ("preprocess", "train", "evaluate")


def records_so_far(params: Params) -> tuple[dict[str, EmissionRecord], list[str]]:
    """The records of every stage that made the model, for the card, and why any is missing or cannot vouch for
    its stage: the card's verdict then fails closed, as the gate's does."""
    records, problems = {}, []
    for stage in (*BEFORE, *params.distill.stage_names()):
        try:
            records[stage] = load_record(record_path(stage))
        except RecordError as exc:
            problems.append(str(exc))
            continue
        problems.extend(vouch(stage, records[stage]))
    return records, problems


def main() -> None:
    params = load_params(Path(PARAMS_FILE))
    deployed_path = layout.EXPORT_DIR / layout.EXPORT_FILES[params.export.deploy]
    model_name = params.deployed_model()
    with StageRun(
        "export",
        ("export", "distill", "carbon", "sci"),
        carbon=params.carbon,
        outputs=[layout.EXPORT_DIR, layout.EXPORT_METRICS],
        metrics_files=[layout.EXPORT_METRICS],
        artifacts=[deployed_path, layout.MODEL_CARD, layout.INPUT_EXAMPLE],
    ) as run:
        import torch

        from carbon_budget.gate.footprint import footprint
        from pipeline import modelcard
        from pipeline.data import load_splits
        from pipeline.evaluation import top1_accuracy
        from pipeline.export import check_artifact, inference_energy, write_artifacts
        from pipeline.models import count_parameters, load_model

        splits = load_splits(layout.PROCESSED_DATA)

        def inference(fmt: str, path: Path) -> dict[str, Any]:
            return inference_energy(
                run,
                fmt,
                path,
                splits.x_test,
                params.export.latency_batch_size,
                params.export.inference_seconds,
                params.export.threads,
            )

        def export_checked(model_file: Path, formats: list[str], folder: Path) -> tuple[dict[str, Any], float, int]:
            model, config = load_model(model_file)
            with torch.no_grad():
                reference = model(torch.from_numpy(splits.x_test)).numpy()
            paths = write_artifacts(model, config["in_features"], formats, folder, params.export.opset)
            checks = {
                fmt: check_artifact(
                    fmt,
                    path,
                    reference,
                    splits.x_test,
                    splits.y_test,
                    params.export.latency_batch_size,
                    params.export.max_accuracy_drop,
                    params.export.threads,
                ).as_dict()
                for fmt, path in paths.items()
            }
            return checks, top1_accuracy(reference, splits.y_test), count_parameters(model)

        checks, reference_accuracy, parameters = export_checked(
            layout.trained_model(model_name), list(params.export.formats), layout.EXPORT_DIR
        )
        deployed = checks[params.export.deploy]
        document: dict[str, Any] = {
            "model": model_name,
            "trained_by": "train" if model_name == "teacher" else layout.distill_stage(model_name),
            "deploy": {
                **deployed,
                "parameters": parameters,
                "md5": file_md5(deployed_path),
                "inference": inference(params.export.deploy, deployed_path),
            },
            "artifacts": checks,
            "model_size_mb": deployed["size_mb"],
            "parameters": parameters,
            "reference_accuracy": reference_accuracy,
            "latency_batch_size": params.export.latency_batch_size,
        }
        if model_name != "teacher":
            with tempfile.TemporaryDirectory() as scratch:  # the teacher, as it would have shipped
                teacher, teacher_accuracy, teacher_parameters = export_checked(
                    layout.MODEL, [params.export.deploy], Path(scratch)
                )
                teacher_inference = inference(params.export.deploy, Path(teacher[params.export.deploy]["path"]))
            document["teacher"] = {
                **teacher[params.export.deploy],
                "inference": teacher_inference,
                "path": None,
                "parameters": teacher_parameters,
                "reference_accuracy": teacher_accuracy,
                "trained_by": "train",
            }
        write_json(layout.EXPORT_METRICS, document)
        write_json(layout.INPUT_EXAMPLE, {"input": splits.x_test[:2].tolist()})
        records, problems = records_so_far(params)
        measured = footprint(
            {name: r.model_dump(mode="json") for name, r in records.items()},
            document["deploy"]["inference"],
            params.sci,
            params.usage.predictions,
        )
        so_far = check(  # as the gate judges it, with the records so far
            params.budget,
            records,
            deployed["size_mb"],
            deployed["accuracy"],
            problems,
            params.report.noise_pct,
            measured,
        )
        write_text_atomic(
            layout.MODEL_CARD,
            modelcard.render(
                records,
                checks,
                params.export.deploy,
                so_far,
                budget_note="The gate stage decides with every record (metrics/gate.json).",
                task=modelcard.task_of(splits.image_shape),
                dataset={"name": params.data.path or params.data.source, "type": params.data.source},
                model_name=model_name,
                inference=document["deploy"]["inference"],
                footprint=measured,
            ),
        )
        run.tags.update(
            deploy_format=params.export.deploy,
            deploy_artifact=deployed_path.as_posix(),
            deploy_model=model_name,
            deploy_input_example=layout.INPUT_EXAMPLE.as_posix(),
        )
        if params.export.registered_model_name:
            run.tags["registered_model_name"] = params.export.registered_model_name


if __name__ == "__main__":
    stage_main(main)
