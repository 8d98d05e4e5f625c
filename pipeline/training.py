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


# epoch -> the indices of the training samples this process trains on that epoch, in batch order
BatchOrder = Callable[[int], torch.Tensor]


def shuffled_order(n_samples: int, seed: int) -> BatchOrder:
    """A fresh seeded permutation of every sample each epoch: one process sees the whole training set."""
    generator = torch.Generator().manual_seed(seed)
    return lambda _epoch: torch.randperm(n_samples, generator=generator)


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _label_loss(logits: torch.Tensor, _x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, y)


@dataclass(frozen=True)
class TrainingResult:
    history: list[EpochResult]
    stopped_by: str  # "completed", "early_stopping", or the reason `on_epoch` gave


def train_model(
    model: nn.Module,
    splits: Splits,
    params: TrainParams,
    device: torch.device,
    on_epoch: Callable[[EpochResult], str | None] | None = None,
    order: BatchOrder | None = None,
    show_progress: bool = True,
    loss_fn: LossFn | None = None,
    desc: str = "train",
) -> TrainingResult:
    """Train for `params.epochs`, with a progress bar on a terminal (none in CI logs).

    Early stopping on validation loss (`params.patience`) and a stop asked by `on_epoch` (which returns a
    reason, e.g. a budget forecast) are distinct, and the result says which. `loss_fn(logits, x, y)` replaces
    cross-entropy for training (distillation adds the teacher's soft targets); validation always scores
    against the labels, so curves compare across teacher and students. `order` is the share of the training
    set this process sees each epoch (all of it, shuffled, unless a distributed run splits it); each process of
    a distributed run scores the whole validation set, so every process takes the same decisions."""
    loss_fn = loss_fn or _label_loss
    seed_everything(params.seed)
    if params.threads is not None:
        torch.set_num_threads(params.threads)
    model.to(device)
    x_train = torch.from_numpy(splits.x_train).to(device)
    y_train = torch.from_numpy(splits.y_train).to(device)
    x_val = torch.from_numpy(splits.x_val).to(device)
    y_val = torch.from_numpy(splits.y_val).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    order = order or shuffled_order(len(x_train), params.seed)
    history: list[EpochResult] = []
    best_loss, stale_epochs, stopped_by = float("inf"), 0, "completed"
    progress = tqdm(
        range(1, params.epochs + 1), desc=desc, unit="epoch", leave=False, disable=None if show_progress else True
    )
    for epoch in progress:
        model.train()
        indices = order(epoch).to(device)
        for start in range(0, len(indices), params.batch_size):
            batch = indices[start : start + params.batch_size]
            inputs = x_train[batch]
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), inputs, y_train[batch])
            loss.backward()
            optimizer.step()
        train_loss, train_accuracy = _score(model, x_train, y_train)
        val_loss, val_accuracy = _score(model, x_val, y_val)
        result = EpochResult(epoch, train_loss, train_accuracy, val_loss, val_accuracy)
        history.append(result)
        progress.set_postfix(val_loss=f"{val_loss:.3f}", val_acc=f"{val_accuracy:.3f}")
        reason = on_epoch(result) if on_epoch is not None else None
        if reason is not None:
            stopped_by = reason
            break
        if val_loss < best_loss - params.min_delta:
            best_loss, stale_epochs = val_loss, 0
        else:
            stale_epochs += 1
        if params.patience is not None and stale_epochs >= params.patience:
            stopped_by = "early_stopping"
            break
    progress.close()
    model.to("cpu")
    return TrainingResult(history, stopped_by)
