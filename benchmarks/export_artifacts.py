"""Each deployable artifact of the default model against eager PyTorch, side by side in one run.

    python -m benchmarks.export_artifacts [--epochs 20]

Trains the default model, writes every format, and prints each artifact's size against the fp32 state
dict, its accuracy drop on the test split, and its latency per batch against eager PyTorch.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.config import DataParams, ModelParams, TrainParams
from pipeline.data import load_dataset, prepare
from pipeline.evaluation import top1_accuracy
from pipeline.export import check_artifact, write_artifacts
from pipeline.models import build_model, model_config
from pipeline.training import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    splits = prepare(load_dataset(DataParams(), Path.cwd()), DataParams())
    model = build_model(model_config(ModelParams(), 64, 10, None), seed=42)
    train_model(model, splits, TrainParams(epochs=args.epochs), torch.device("cpu"))
    model.eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    state_dict_mb = buffer.tell() / 1e6
    batch = torch.from_numpy(splits.x_test[:64])
    with torch.no_grad():
        reference = model(torch.from_numpy(splits.x_test)).numpy()
        model(batch)
        started = time.perf_counter()
        for _ in range(200):
            model(batch)
        eager_ms = (time.perf_counter() - started) / 200 * 1000
    with tempfile.TemporaryDirectory() as folder:
        paths = write_artifacts(model, 64, ["torchscript", "onnx", "onnx_int8"], Path(folder), opset=17)
        checks = {f: check_artifact(f, p, reference, splits.x_test, splits.y_test, 64, 1.0) for f, p in paths.items()}
    print(
        f"fp32 state dict {state_dict_mb * 1000:.1f} KB; eager PyTorch {eager_ms:.3f} ms per batch of 64;"
        f" test accuracy {top1_accuracy(reference, splits.y_test):.2%}"
    )
    print("format        size KB  vs state dict  accuracy drop  latency ms  vs eager")
    for fmt, check in checks.items():
        print(
            f"{fmt:<12} {check.size_mb * 1000:>8.1f} {check.size_mb / state_dict_mb:>13.2f}x"
            f" {check.accuracy_drop * 100:>+12.2f} pt {check.latency_ms_per_batch:>10.3f}"
            f" {check.latency_ms_per_batch / eager_ms:>8.2f}x"
        )
    ratio = checks["onnx"].size_mb / checks["onnx_int8"].size_mb
    print(
        f"int8 is {ratio:.2f}x smaller than fp32 ONNX, {np.round(checks['onnx_int8'].accuracy_drop * 100, 2)}"
        " points of accuracy lost"
    )


if __name__ == "__main__":
    main()
