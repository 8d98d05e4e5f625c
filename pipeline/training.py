"""The training loop, readable top to bottom: seeded, deterministic on CPU, on CUDA when there is one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline.config import TrainParams
from pipeline.data import Splits


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float

    def as_row(self) -> dict[str, float]:
        return asdict(self)


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@torch.no_grad()
def _score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(1) == y).float().mean().item()
    return loss, accuracy


def train_model(
    model: nn.Module,
    splits: Splits,
    params: TrainParams,
    device: torch.device,
    on_epoch: Callable[[EpochResult], bool] | None = None,
) -> list[EpochResult]:
    """Train for `params.epochs`; `on_epoch` may return False to stop early (the caller records why)."""
    seed_everything(params.seed)
    model.to(device)
    x_train = torch.from_numpy(splits.x_train).to(device)
    y_train = torch.from_numpy(splits.y_train).to(device)
    x_val = torch.from_numpy(splits.x_val).to(device)
    y_val = torch.from_numpy(splits.y_val).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    generator = torch.Generator().manual_seed(params.seed)
    history: list[EpochResult] = []
    progress = tqdm(range(1, params.epochs + 1), desc="train", unit="epoch", leave=False)
    for epoch in progress:
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        for start in range(0, len(order), params.batch_size):
            batch = order[start : start + params.batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
        train_loss, train_accuracy = _score(model, x_train, y_train)
        val_loss, val_accuracy = _score(model, x_val, y_val)
        result = EpochResult(epoch, train_loss, train_accuracy, val_loss, val_accuracy)
        history.append(result)
        progress.set_postfix(val_loss=f"{val_loss:.3f}", val_acc=f"{val_accuracy:.3f}")
        if on_epoch is not None and not on_epoch(result):
            break
    progress.close()
    model.to("cpu")
    return history
