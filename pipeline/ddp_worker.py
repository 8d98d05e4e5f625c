"""One process of a distributed training run: `torchrun ... -m pipeline.ddp_worker EXCHANGE_DIR`.

torchrun starts `nproc_per_node` of these on every node. Each trains a DistributedDataParallel copy of the model
on its DistributedSampler share of the training set; gradients are averaged after every step, so every copy
holds the same weights. The global batch stays `train.batch_size` (each process takes its share of it), so a
distributed run takes as many optimiser steps per epoch as a single process and reaches the same accuracy.

The workers measure nothing and log nothing: the stage process that launched them measures the whole node.
They talk to it through files in EXCHANGE_DIR (local to the node):

- `node.json` (local rank 0): which node this is and how many processes it runs;
- `progress.jsonl` (global rank 0): one line per epoch, for the stage's budget forecast;
- `stop` (written by the stage): rank 0 sees it at the end of an epoch and every process stops there;
- `cpu-<local rank>.json`: each process's own CPU-seconds, to check the node's figure covers them;
- `result.json`, `model.pt` (global rank 0): the history and the trained model.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import uuid
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from carbon_budget.config import PARAMS_FILE
from carbon_budget.errors import ParamsError
from carbon_budget.files import write_json
from pipeline import layout
from pipeline.config import load_params
from pipeline.data import load_splits
from pipeline.models import build_model, count_parameters, model_config, save_model
from pipeline.training import BatchOrder, EpochResult, pick_device, train_model

STOPPED_BY_STAGE = "stopped_by_stage"


def sharded_order(n_samples: int, rank: int, world_size: int, seed: int) -> BatchOrder:
    """This process's share of each epoch's shuffle; every process draws the same permutation (same seed and
    epoch) and takes every world_size-th sample, padded so all take the same number of steps."""
    samples: Any = range(n_samples)  # the sampler only takes the length of what it samples
    sampler: DistributedSampler[int] = DistributedSampler(
        samples, num_replicas=world_size, rank=rank, shuffle=True, seed=seed
    )

    def order(epoch: int) -> torch.Tensor:
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long)

    return order


def main(exchange: Path) -> None:
    params = load_params(Path(PARAMS_FILE))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank, local_size = int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])
    device = pick_device(params.train.device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ParamsError(
                f"train.distributed.nproc_per_node = {local_size}: this node has {torch.cuda.device_count()} CUDA"
                " device(s), and NCCL needs one per process"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        # a token of this run, so node figures left by an earlier run with the same rdzv_id are never added up
        token: list[str | None] = [uuid.uuid4().hex if rank == 0 else None]
        dist.broadcast_object_list(token)
        if local_rank == 0:
            node_rank = int(os.environ["GROUP_RANK"])
            write_json(exchange / "node.json", {"node_rank": node_rank, "processes": local_size, "run_token": token[0]})
        splits = load_splits(layout.PROCESSED_DATA)
        config = model_config(params.model, splits.x_train.shape[1], len(splits.classes), splits.image_shape)
        model = build_model(config, seed=params.train.seed).to(device)
        replica = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        share = params.train.model_copy(update={"batch_size": math.ceil(params.train.batch_size / world_size)})
        stop_file, progress_file = exchange / "stop", exchange / "progress.jsonl"

        def on_epoch(epoch: EpochResult) -> str | None:
            """Report the epoch (rank 0), then agree with every process on whether the stage asked to stop."""
            if rank == 0:
                with progress_file.open("a", encoding="utf-8") as progress:
                    progress.write(json.dumps(epoch.as_row()) + "\n")
            stop = torch.tensor([int(rank == 0 and stop_file.exists())], device=device)
            dist.all_reduce(stop, op=dist.ReduceOp.MAX)
            if not stop.item():
                return None
            return stop_file.read_text(encoding="utf-8").strip() if rank == 0 else STOPPED_BY_STAGE

        order = sharded_order(len(splits.x_train), rank, world_size, params.train.seed)
        result = train_model(replica, splits, share, device, on_epoch=on_epoch, order=order, show_progress=rank == 0)
        if rank == 0:
            save_model(exchange / "model.pt", model, config)
            write_json(
                exchange / "result.json",
                {
                    "history": [epoch.as_row() for epoch in result.history],
                    "stopped_by": result.stopped_by,
                    "parameters": count_parameters(model),
                    "device": device.type,
                },
            )
    finally:
        dist.destroy_process_group()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    write_json(exchange / f"cpu-{local_rank}.json", {"cpu_s": usage.ru_utime + usage.ru_stime})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    # every file is written and closed: skip the interpreter's teardown after torch (~0.5 s a process here), which
    # the node would otherwise be charged for while torchrun waits
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
