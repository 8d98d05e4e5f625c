"""The classifiers, and how they are saved: a state dict plus the plain config needed to rebuild it.

Saving plain data (no pickled classes) is what lets every load use `weights_only=True`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from carbon_budget.files import write_bytes_atomic
from pipeline.config import ModelParams
from pipeline.errors import ModelError


class MLP(nn.Module):
    def __init__(self, in_features: int, n_classes: int, hidden_sizes: list[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for index, hidden in enumerate(hidden_sizes):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if index == 0 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class CNN(nn.Module):
    """Small conv net for image-shaped inputs; takes flat rows and reshapes them, like the MLP's input."""

    def __init__(self, image_shape: list[int], n_classes: int, channels: list[int], dropout: float) -> None:
        super().__init__()
        self.image_shape = list(image_shape)
        layers: list[nn.Module] = []
        width, side = image_shape[0], min(image_shape[1:])
        for out in channels:
            layers += [nn.Conv2d(width, out, kernel_size=3, padding=1), nn.ReLU()]
            if side >= 4:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            width = out
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *image_shape)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(-1, *self.image_shape)))


def model_config(
    params: ModelParams, in_features: int, n_classes: int, image_shape: tuple[int, ...] | None
) -> dict[str, Any]:
    """Everything needed to rebuild the network, as plain data."""
    if params.arch == "cnn" and image_shape is None:
        side = math.isqrt(in_features)
        if side * side != in_features:
            raise ModelError(
                f"model.arch 'cnn' needs image-shaped inputs; {in_features} features are not a square image"
            )
        image_shape = (1, side, side)
    return {
        "arch": params.arch,
        "in_features": in_features,
        "n_classes": n_classes,
        "hidden_sizes": list(params.hidden_sizes),
        "channels": list(params.channels),
        "dropout": params.dropout,
        "image_shape": list(image_shape) if image_shape else [],
    }


def build_model(config: dict[str, Any], seed: int | None = None) -> nn.Module:
    """The network for `config`; with a seed, its initial weights are the same on every run."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if config["arch"] == "cnn":
            return CNN(config["image_shape"], config["n_classes"], config["channels"], config["dropout"])
        return MLP(config["in_features"], config["n_classes"], config["hidden_sizes"], config["dropout"])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(path: Path, model: nn.Module, config: dict[str, Any]) -> None:
    """Written whole or not at all (atomic rename): an interrupted save never leaves half a model behind."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"config": config, "state_dict": state}, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _first_sentence(exc: Exception) -> str:
    """torch's messages run to paragraphs (one advises turning weights_only off); the first sentence says enough."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text.split('. ')[0][:160]}" if text else type(exc).__name__


def load_model(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a saved model; never unpickles arbitrary objects (weights_only=True)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        config = saved["config"]
        model = build_model(config)
        model.load_state_dict(saved["state_dict"])
    except FileNotFoundError:
        raise ModelError(f"{path}: model file is missing (run the train stage)") from None
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise ModelError(
            f"{path}: model file cannot be loaded: it is truncated, corrupt or not saved by this pipeline"
            f" ({_first_sentence(exc)}); rebuild it with `dvc repro train`"
            f" or restore it with `dvc checkout --force {path}`"
        ) from None
    model.eval()
    return model, config
