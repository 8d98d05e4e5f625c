"""Deployable artifacts of a trained model, and what they weigh."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

FILE_NAMES = {"torchscript": "model.torchscript.pt"}


def export_torchscript(model: nn.Module, path: Path) -> Path:
    """Script (not trace) the model so it runs without this package's Python code."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(model.eval()).save(str(path))
    return path


def size_mb(path: Path) -> float:
    """Size on disk in MB (10^6 bytes), the unit of budget.model_size_mb."""
    return path.stat().st_size / 1e6
