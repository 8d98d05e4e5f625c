"""Deployable artifacts of a trained model, checked against the model itself before anyone deploys them.

Every artifact is loaded back and run on the test split: its accuracy, its accuracy drop against the trained
model, the largest output difference for fp32 formats, and its mean latency per batch. An artifact that does
not load, or loses more accuracy than `export.max_accuracy_drop`, fails the export with a message naming it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from carbon_budget.errors import CarbonBudgetError
from carbon_budget.measure.inference import measure_predictions
from pipeline.evaluation import top1_accuracy
from pipeline.layout import EXPORT_FILES

if TYPE_CHECKING:
    from carbon_budget.measure.stage import StageRun

FP32_FORMATS = ("torchscript", "onnx")


class ExportError(CarbonBudgetError):
    """An artifact could not be written, loaded, or does not match the trained model closely enough."""


@dataclass(frozen=True)
class ArtifactCheck:
    format: str
    path: str
    size_mb: float
    accuracy: float
    accuracy_drop: float
    max_abs_diff: float | None
    latency_ms_per_batch: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def size_mb(path: Path) -> float:
    """Size on disk in MB (10^6 bytes), the unit of budget.model_size_mb."""
    return path.stat().st_size / 1e6


def export_torchscript(model: nn.Module, path: Path) -> None:
    """Script (not trace) the model so it runs without this package's Python code."""
    torch.jit.script(model.eval()).save(str(path))


def export_onnx(model: nn.Module, in_features: int, path: Path, opset: int) -> None:
    """TorchScript-based ONNX exporter: the dynamo exporter would import torch._dynamo (1.3 s) for a 3-layer net."""
    example = torch.zeros(1, in_features)
    torch.onnx.export(
        model.eval(),
        (example,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def quantize_int8(onnx_path: Path, path: Path) -> None:
    """ONNX Runtime dynamic quantisation: int8 weights, activations quantised on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process is for conv nets
    quantize_dynamic(str(onnx_path), str(path), weight_type=QuantType.QInt8)


def write_artifacts(
    model: nn.Module, in_features: int, formats: Sequence[str], folder: Path, opset: int
) -> dict[str, Path]:
    """Write each requested format; int8 is quantised from an fp32 ONNX export (kept only if asked for)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {fmt: folder / EXPORT_FILES[fmt] for fmt in formats}
    try:
        if "torchscript" in paths:
            export_torchscript(model, paths["torchscript"])
        if "onnx" in paths or "onnx_int8" in paths:
            with tempfile.TemporaryDirectory() as scratch:
                fp32 = paths.get("onnx", Path(scratch) / EXPORT_FILES["onnx"])
                export_onnx(model, in_features, fp32, opset)
                if "onnx_int8" in paths:
                    quantize_int8(fp32, paths["onnx_int8"])
    except (RuntimeError, OSError, ValueError) as exc:
        raise ExportError(f"export failed: {type(exc).__name__}: {exc}") from None
    return paths


def predictor(fmt: str, path: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Load an artifact the way a deployment would, as a function from inputs to logits, predicting on `threads`
    CPU threads (None: the runtime's default)."""
    try:
        if fmt == "torchscript":
            if threads is not None:
                torch.set_num_threads(threads)
            module = torch.jit.load(str(path), map_location="cpu").eval()

            def run_torchscript(x: np.ndarray) -> np.ndarray:
                with torch.no_grad():
                    return module(torch.from_numpy(x)).numpy()

            return run_torchscript
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    except Exception as exc:  # each runtime raises its own types for a truncated or foreign file
        raise ExportError(f"{path}: {fmt} artifact cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})") from None


def _latency_ms(
    run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, repeats: int = 20, rounds: int = 5
) -> float:
    """Mean latency per batch over `repeats` calls, in the fastest of `rounds` rounds (timeit's advice): on a
    shared machine one preemption inside a 0.05 ms measurement made a student look 300x faster than its teacher."""
    run(batch)  # first call pays one-time set-up
    means = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeats):
            run(batch)
        means.append((time.perf_counter() - started) / repeats * 1000)
    return min(means)


def check_artifact(
    fmt: str,
    path: Path,
    reference: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    batch_size: int,
    max_accuracy_drop: float,
    threads: int | None = None,
) -> ArtifactCheck:
    """Compare an artifact's outputs with the trained model's `reference` logits on the test split."""
    run = predictor(fmt, path, threads)
    try:  # in deployment-sized batches: a dynamically quantised model picks its activation scale per batch
        logits = np.concatenate([run(x_test[i : i + batch_size]) for i in range(0, len(x_test), batch_size)])
    except Exception as exc:
        raise ExportError(f"{path}: {fmt} artifact fails on the test split ({type(exc).__name__}: {exc})") from None
    reference_accuracy = top1_accuracy(reference, y_test)
    accuracy = top1_accuracy(logits, y_test)
    check = ArtifactCheck(
        format=fmt,
        path=path.as_posix(),
        size_mb=size_mb(path),
        accuracy=accuracy,
        accuracy_drop=reference_accuracy - accuracy,
        max_abs_diff=float(np.abs(logits - reference).max()) if fmt in FP32_FORMATS else None,
        latency_ms_per_batch=_latency_ms(run, x_test[:batch_size]),
    )
    if check.accuracy_drop > max_accuracy_drop:
        raise ExportError(
            f"{path}: {fmt} artifact loses {check.accuracy_drop:.2%} accuracy against the trained"
            f" model (limit export.max_accuracy_drop = {max_accuracy_drop:.2%})"
        )
    return check


def inference_energy(
    run: StageRun, fmt: str, path: Path, x_test: np.ndarray, batch_size: int, seconds: float, threads: int | None
) -> dict[str, Any]:
    """The artifact's measured energy per prediction: it predicts on `x_test` in deployment-sized batches for at
    least `seconds` under the stage's own meter (`run`), as `metrics/export.json` keeps it."""
    batches = [(x_test[i : i + batch_size], len(x_test[i : i + batch_size])) for i in range(0, len(x_test), batch_size)]
    methods = run.methods_now()
    method = (
        f"measured under the export stage's meter, {seconds:g} s of predictions in batches of {batch_size}"
        f" on {threads or 'the default'} thread(s)"
        f" (cpu {methods['cpu']}, ram {methods['ram']}, gpu {methods['gpu']})"
    )
    measured = measure_predictions(run.energy_kwh, predictor(fmt, path, threads), batches, seconds, method)
    return measured.as_dict(run.intensity)
