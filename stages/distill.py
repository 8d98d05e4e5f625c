"""DVC stage (one per student in params `distill.students`): train a smaller student from the teacher's soft
targets, and measure what distillation costs, so the report can say whether it paid for its own energy."""

import sys
from pathlib import Path

from carbon_budget.config import PARAMS_FILE
from carbon_budget.entry import stage_main
from carbon_budget.errors import ParamsError
from carbon_budget.files import write_csv, write_json
from carbon_budget.measure.stage import StageRun
from pipeline import layout
from pipeline.config import load_params


def main() -> None:
    params = load_params(Path(PARAMS_FILE))
    name = sys.argv[1] if len(sys.argv) == 2 else ""
    student = params.distill.students.get(name)
    if student is None:
        raise ParamsError(f"no student {name!r} in params.yaml distill.students ({', '.join(params.distill.students)})")
    model_path, metrics_path, curves_path = (
        layout.student_model(name),
        layout.distill_metrics(name),
        layout.distill_curves(name),
    )
    with StageRun(
        layout.distill_stage(name),
        (f"distill.students.{name}", "train", "carbon"),
        carbon=params.carbon,
        outputs=[model_path, metrics_path, curves_path],
        metrics_files=[metrics_path],
        artifacts=[model_path],
    ) as run:
        import torch

        from pipeline.data import load_splits
        from pipeline.distillation import distillation_loss, student_config, student_training
        from pipeline.evaluation import top1_accuracy
        from pipeline.models import build_model, count_parameters, load_model, save_model
        from pipeline.training import pick_device, train_model

        splits = load_splits(layout.PROCESSED_DATA)
        teacher, teacher_config = load_model(layout.MODEL)
        device = pick_device(params.train.device)
        teacher.to(device)
        config = student_config(teacher_config, student)
        model = build_model(config, seed=params.train.seed)
        result = train_model(
            model,
            splits,
            student_training(params.train, student),
            device,
            loss_fn=distillation_loss(teacher, student.temperature, student.alpha),
            desc=f"distill {name}",
        )
        history = [epoch.as_row() for epoch in result.history]
        with torch.no_grad():
            test_accuracy = top1_accuracy(model(torch.from_numpy(splits.x_test)).numpy(), splits.y_test)
        write_csv(curves_path, history)
        write_json(
            metrics_path,
            {
                **{k: v for k, v in history[-1].items() if k != "epoch"},
                "test_accuracy": test_accuracy,
                "epochs_run": len(history),
                "parameters": count_parameters(model),
                "teacher_parameters": count_parameters(teacher),
                "stopped_by": result.stopped_by,
            },
        )
        run.tags.update(student=name, stopped_by=result.stopped_by)
        save_model(model_path, model, config)


if __name__ == "__main__":
    stage_main(main)
