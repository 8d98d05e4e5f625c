"""Knowledge distillation: a smaller student learns from the teacher's softened outputs and from the labels.

The loss is Hinton et al.'s (2015): alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) *
cross-entropy with the labels. The T^2 keeps the soft term's gradients on the scale of the hard term's, so
alpha means the same thing at any temperature.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.config import StudentParams, TrainParams
from pipeline.training import LossFn


def distillation_loss(teacher: nn.Module, temperature: float, alpha: float) -> LossFn:
    """The training loss of a student of `teacher` (which must be in eval mode and stays frozen)."""

    def loss(student_logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            soft_targets = nn.functional.log_softmax(teacher(x) / temperature, dim=1)
        soft = nn.functional.kl_div(
            nn.functional.log_softmax(student_logits / temperature, dim=1),
            soft_targets,
            reduction="batchmean",
            log_target=True,
        )
        hard = nn.functional.cross_entropy(student_logits, y)
        return alpha * temperature**2 * soft + (1 - alpha) * hard

    return loss


def student_config(teacher_config: dict[str, Any], student: StudentParams) -> dict[str, Any]:
    """A student is an MLP over the teacher's inputs and classes, without dropout: it is small already."""
    return {
        **teacher_config,
        "arch": "mlp",
        "hidden_sizes": list(student.hidden_sizes),
        "dropout": 0.0,
    }


def student_training(train: TrainParams, student: StudentParams) -> TrainParams:
    """The teacher's training settings, with the student's own epochs and learning rate where it sets them."""
    return train.model_copy(
        update={"epochs": student.epochs or train.epochs, "lr": student.lr or train.lr},
    )
