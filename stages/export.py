"""DVC stage: write the deployable artifact and record what it weighs (the model-size budget's figure)."""

from pathlib import Path

from pipeline import layout
from pipeline.config import PARAMS_FILE, load_params
from pipeline.files import write_json
from pipeline.stage import StageRun, stage_main


def main() -> None:
    params = load_params(Path(PARAMS_FILE))
    with StageRun(
        "export",
        params,
        ("export", "carbon"),
        outputs=[layout.EXPORT_DIR, layout.EXPORT_METRICS],
        metrics_files=[layout.EXPORT_METRICS],
    ):
        from pipeline.export import FILE_NAMES, export_torchscript, size_mb
        from pipeline.models import count_parameters, load_model

        model, _ = load_model(layout.MODEL)
        parameters = count_parameters(model)
        artifacts = {}
        for fmt in params.export.formats:
            path = export_torchscript(model, layout.EXPORT_DIR / FILE_NAMES[fmt])
            artifacts[fmt] = {"path": path.as_posix(), "size_mb": size_mb(path)}
        deployed = artifacts[params.export.deploy]
        write_json(
            layout.EXPORT_METRICS,
            {
                "deploy": {"format": params.export.deploy, "parameters": parameters, **deployed},
                "artifacts": artifacts,
                "model_size_mb": deployed["size_mb"],
                "parameters": parameters,
            },
        )


if __name__ == "__main__":
    stage_main(main)
