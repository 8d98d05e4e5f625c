"""Models and the training loop on a small slice of the real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.config import DataParams, ModelParams, TrainParams
from pipeline.data import load_dataset, prepare
from pipeline.errors import ModelError
from pipeline.models import build_model, load_model, model_config, save_model
from pipeline.training import train_model


@pytest.fixture(scope="module")
def splits():  # type: ignore[no-untyped-def]
    return prepare(load_dataset(DataParams(), Path.cwd()), DataParams())


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_each_architecture_learns_and_round_trips(splits, arch: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = model_config(ModelParams(arch=arch), splits.x_train.shape[1], len(splits.classes), splits.image_shape)
    model = build_model(config)
    result = train_model(model, splits, TrainParams(epochs=3), torch.device("cpu"))
    assert result.stopped_by == "completed" and len(result.history) == 3
    assert result.history[-1].val_accuracy > 0.6
    path = tmp_path / "model.pt"
    save_model(path, model, config)
    loaded, loaded_config = load_model(path)
    x = torch.from_numpy(splits.x_test[:8])
    assert loaded_config == config
    assert torch.allclose(loaded(x), model.eval()(x))


def test_training_is_deterministic_on_cpu(splits) -> None:  # type: ignore[no-untyped-def]
    config = model_config(ModelParams(), splits.x_train.shape[1], len(splits.classes), None)
    losses = [
        train_model(build_model(config, seed=7), splits, TrainParams(epochs=2), torch.device("cpu"))
        .history[-1]
        .val_loss
        for _ in range(2)
    ]
    assert losses[0] == losses[1]


def test_early_stopping_is_its_own_reason(splits) -> None:  # type: ignore[no-untyped-def]
    config = model_config(ModelParams(), splits.x_train.shape[1], len(splits.classes), None)
    never_good_enough = TrainParams(epochs=20, patience=2, min_delta=10.0)
    result = train_model(build_model(config), splits, never_good_enough, torch.device("cpu"))
    assert result.stopped_by == "early_stopping" and len(result.history) == 3  # the first epoch sets the best
    asked = train_model(
        build_model(config),
        splits,
        TrainParams(epochs=20),
        torch.device("cpu"),
        on_epoch=lambda epoch: "budget_forecast" if epoch.epoch == 3 else None,
    )
    assert asked.stopped_by == "budget_forecast" and len(asked.history) == 3


def test_cnn_needs_square_inputs() -> None:
    with pytest.raises(ModelError, match="not a square image"):
        model_config(ModelParams(arch="cnn"), 10, 2, None)


def test_corrupt_model_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x04 definitely not a model")
    with pytest.raises(ModelError, match="cannot be loaded"):
        load_model(path)
    with pytest.raises(ModelError, match="missing"):
        load_model(tmp_path / "absent.pt")


def test_distributed_shares_cover_the_training_set_once_in_equal_steps() -> None:
    from pipeline.ddp_worker import sharded_order

    shares = [sharded_order(101, rank, 2, seed=3)(1) for rank in range(2)]
    assert len(shares[0]) == len(shares[1]) == 51  # padded: every process takes the same number of steps
    assert set(torch.cat(shares).tolist()) == set(range(101))
    assert not set(shares[0][:50].tolist()) & set(shares[1][:50].tolist())
    assert not torch.equal(sharded_order(101, 0, 2, seed=3)(2), shares[0])  # reshuffled every epoch
