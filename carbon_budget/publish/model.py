"""The deployed model, logged as an MLflow model on its stage's run after the runs are in (`delivery.py`)."""

from __future__ import annotations

import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

from carbon_budget.files import read_json
from carbon_budget.layout import tracking_uri
from carbon_budget.publish.outbox import read_snapshot
from carbon_budget.publish.runs import experiment_id_of, find_run, open_client, publish_error
from carbon_budget.publish.tags import MODEL_LOGGED, MODEL_NOT_REGISTERED, TAG_MODEL, TAG_RECORD

# MLflow runs this file, not the tool: it wraps a TorchScript file as a pyfunc model (see `_log_model`)
TORCHSCRIPT_MODEL_CODE = Path(__file__).with_name("torchscript_model.py")


def log_deployed_model(folder: Path, uri: str | None = None) -> bool:
    """Log the snapshot's deployed artifact as an MLflow model on its stage's run; True when one was logged.

    Separate from `publish` because it costs about a second (MLflow writes and registers a model): the
    background worker does it after the gate has its answer. A tag on the run makes a replay skip it. The model is
    registered (when params name one) only for an execution whose gate passed: a failing one is logged for
    inspection, tagged as such, and never becomes a version in the registry.
    """
    uri = uri or tracking_uri()
    snapshot = read_snapshot(folder)
    try:
        client = open_client(uri)
        for entry in snapshot["entries"]:
            tags = entry["record"].get("tags", {})
            if "deploy_format" not in tags:
                continue
            experiment_id = experiment_id_of(client, snapshot["experiment"], uri)
            run = find_run(client, experiment_id, TAG_RECORD, entry["record"]["record_id"])
            passed = snapshot["verdict"].get("passed") is True
            state = run.data.tags.get(TAG_MODEL) if run is not None else None
            # an artifact logged when its gate failed is logged again, registered, once a later gate passes it
            if run is None or state == MODEL_LOGGED or (state == MODEL_NOT_REGISTERED and not passed):
                return False
            if not passed:  # logged for inspection only: what ships is what passed the gate
                tags = {k: v for k, v in tags.items() if k != "registered_model_name"}
            _log_model(uri, run.info.run_id, tags, [folder / a for a in entry["artifacts"]])
            client.set_tag(run.info.run_id, TAG_MODEL, MODEL_LOGGED if passed else MODEL_NOT_REGISTERED)
            return True
    except Exception as exc:  # MLflow raises many types
        raise publish_error(uri, "the model", exc) from None
    return False


def _log_model(uri: str, run_id: str, tags: dict[str, str], files: list[Path]) -> None:
    """The deployed artifact as an MLflow model with a signature (registered when params name a model), so it can be
    served or compared like any MLflow model.

    Logged as the file export wrote, without loading it: a TorchScript file through `torchscript_model` (a pyfunc
    that imports torch only where the model is used), an ONNX file with `mlflow.onnx`. The signature is stated and
    no input example is given: MLflow validates an example by loading the model and predicting with it, which cost
    the background worker torch's import (1.5 CPU-seconds) after every execution. The example stays a file of the
    stage's run (`deploy_input_example`)."""
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    mlflow.set_tracking_uri(uri)
    by_name = {f.name: f for f in files}
    artifact = by_name.get(Path(tags["deploy_artifact"]).name)
    if artifact is None:
        return
    width = -1
    example_file = by_name.get(Path(tags.get("deploy_input_example", "")).name)
    if example_file is not None:  # a JSON {"input": [[...], ...]} the export step names in the tag
        width = len(read_json(example_file)["input"][0])
    onnx_format = tags["deploy_format"].startswith("onnx")
    signature = ModelSignature(  # an unnamed input reaches a pyfunc's predict as an array, not a dict of one
        Schema([TensorSpec(np.dtype(np.float32), (-1, width), "input" if onnx_format else None)]),
        Schema([TensorSpec(np.dtype(np.float32), (-1, -1), "logits")]),
    )
    common: dict[str, Any] = {
        "name": "model",
        "signature": signature,
        "registered_model_name": tags.get("registered_model_name"),
    }
    with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
        # MLflow warns that no input example was given: it is left out on purpose (see above)
        warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
        if onnx_format:
            import onnx

            mlflow.onnx.log_model(onnx.load(str(artifact)), pip_requirements=["onnxruntime", "onnx"], **common)
        else:
            mlflow.pyfunc.log_model(
                python_model=str(TORCHSCRIPT_MODEL_CODE),
                artifacts={"torchscript": str(artifact)},  # the name torchscript_model.py loads it by
                pip_requirements=[f"torch=={version('torch').split('+')[0]}", "numpy"],
                **common,
            )
