"""A deployed TorchScript file as an MLflow pyfunc model: MLflow copies this file into the model ("models from
code") and runs it when the model is loaded, not the tool.

`mlflow.pytorch.log_model` needs the model object, so logging with it imported torch (1.5 CPU-seconds here) and
loaded the file in the background worker after every execution, only to write the same file back. This wrapper
lets the file be logged as it is (as the model's artifact named "torchscript"), and torch is imported where the
model is used:
`mlflow.pyfunc.load_model(uri).predict(batch)` returns the logits for a float32 batch of shape (rows, features).
"""

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class TorchScriptModel(PythonModel):  # type: ignore[misc]
    """Loads the TorchScript file on the CPU once and predicts without gradients."""

    def load_context(self, context: Any) -> None:
        import torch

        self._module = torch.jit.load(context.artifacts["torchscript"], map_location="cpu").eval()

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        # MLflow reads the hint of model_input: an ndarray is one it takes without inferring a schema of its own
        import torch

        with torch.no_grad():
            batch = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
            return self._module(batch).numpy()


mlflow.models.set_model(TorchScriptModel())
