"""Distributed training, seen from the stage process that launches it: one such process per node.

The stage process keeps measuring its node (one energy meter per machine, never one per training process,
so no machine's power is counted twice) and starts `torchrun` as its child; the training processes are
`pipeline.ddp_worker`. Their CPU-seconds are the stage's own process tree, so process-mode attribution
counts them once (see carbon_budget.measure.energy). This module imports no torch: the launcher has no use for it.

With several nodes, each node's stage leaves its node's figures in `train.distributed.node_figures_dir` (a
directory every node can write) once its measurement has stopped; node 0, the node holding global rank 0,
waits for them and records the sum with every node's figures kept.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carbon_budget.errors import CarbonBudgetError, MeasurementError, ParamsError
from carbon_budget.files import read_json, write_json
from carbon_budget.layout import STATE_DIR
from carbon_budget.measure.cpu import tree_cpu_seconds
from carbon_budget.records.record import EmissionRecord, NodeEnergy, node_energy, save_record, with_nodes
from pipeline.config import DistributedParams

WORKER_MODULE = "pipeline.ddp_worker"
EXCHANGE_ROOT = STATE_DIR / "distributed"
POLL_S = 0.05
NODE_FIGURES_WAIT_S = 120.0  # nodes finish within seconds of each other: DDP keeps them in step
TERMINATE_WAIT_S = 15.0


def node_count(settings: DistributedParams) -> int:
    """Nodes taking part: params first, else torchrun's own PET_NNODES, else one."""
    if settings.nnodes is not None:
        return settings.nnodes
    raw = os.environ.get("PET_NNODES", "1")
    try:
        count = int(raw)
    except ValueError:
        raise ParamsError(
            f"PET_NNODES = {raw!r}: a fixed number of nodes is needed to add up their energy (no elastic ranges)"
        ) from None
    if count > 1 and not settings.node_figures_dir:
        raise ParamsError(f"PET_NNODES = {count}: train.distributed.node_figures_dir is required with several nodes")
    return max(count, 1)


def torchrun_command(settings: DistributedParams, exchange: Path) -> list[str]:
    """torchrun's command line; a setting left null is not passed, so torchrun reads its PET_* variable.

    One node with no rendezvous endpoint anywhere runs `--standalone`: a free local port, so two runs on one
    machine never collide on a fixed one."""
    flags = ["--nproc-per-node", str(settings.nproc_per_node)]
    endpoint = settings.rdzv_endpoint or os.environ.get("PET_RDZV_ENDPOINT")
    if node_count(settings) == 1 and not endpoint:
        flags.append("--standalone")
    for flag, value in (
        ("--nnodes", settings.nnodes),
        ("--rdzv-backend", settings.rdzv_backend),
        ("--rdzv-endpoint", settings.rdzv_endpoint),
        ("--rdzv-id", settings.rdzv_id),
    ):
        if value is not None:
            flags += [flag, str(value)]
    return [sys.executable, "-m", "torch.distributed.run", *flags, "-m", WORKER_MODULE, str(exchange)]


@dataclass(frozen=True)
class TrainingOutcome:
    """What global rank 0 reports: the same figures a single-process run produces."""

    history: list[dict[str, float]]
    stopped_by: str
    parameters: int
    device: str


@dataclass(frozen=True)
class NodeRun:
    """This node's part in a distributed run; `outcome` only on the node holding global rank 0."""

    node_rank: int
    processes: int
    run_token: str
    cpu_seconds: float  # torchrun and the training processes, with the launcher's own while it supervised them
    workers_cpu_s: float  # what the training processes report of themselves: a floor for `cpu_seconds`
    outcome: TrainingOutcome | None


def _new_epochs(progress: Path, seen: int) -> list[int]:
    """Epochs rank 0 reported since the last look; a line still being written is left for the next look."""
    try:
        lines = progress.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return []
    complete = [line for line in lines if line.endswith("\n")]
    return [int(json.loads(line)["epoch"]) for line in complete[seen:]]


def _supervise(command: list[str], exchange: Path, on_epoch: Callable[[int], str | None]) -> str | None:
    """Run torchrun to its end, feeding each reported epoch to `on_epoch`; the first reason it returns is
    written to the stop file, which the workers act on at the end of their current epoch. Returns that reason.

    However this ends (error, SIGTERM raised as an exception), torchrun is not left behind: it is terminated
    (it passes the signal to its workers) and waited for, so their CPU-seconds reach this process's accounting.
    """
    process = subprocess.Popen(command)
    stop_reason: str | None = None
    seen = 0
    try:
        while process.poll() is None:
            time.sleep(POLL_S)
            for epoch in _new_epochs(exchange / "progress.jsonl", seen):
                seen += 1
                if stop_reason is None:
                    stop_reason = on_epoch(epoch)
                    if stop_reason is not None:
                        (exchange / "stop").write_text(stop_reason + "\n", encoding="utf-8")
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(TERMINATE_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if process.returncode != 0:
        raise CarbonBudgetError(f"distributed training failed: torchrun exited with {process.returncode} (see above)")
    return stop_reason


def launch(settings: DistributedParams, on_epoch: Callable[[int], str | None], model_path: Path) -> NodeRun:
    """Train on this node's share of a distributed run. The model reaches `model_path` only on the node holding
    global rank 0 and only when training ended by itself, not by a stop `on_epoch` asked for."""
    exchange = EXCHANGE_ROOT / uuid.uuid4().hex
    exchange.mkdir(parents=True)
    try:
        cpu_at_start = tree_cpu_seconds()
        stop_reason = _supervise(torchrun_command(settings, exchange), exchange, on_epoch)
        cpu_seconds = tree_cpu_seconds() - cpu_at_start
        node: dict[str, Any] = read_json(exchange / "node.json")
        workers_cpu_s = sum(float(read_json(path)["cpu_s"]) for path in exchange.glob("cpu-*.json"))
        outcome = None
        if (exchange / "result.json").exists():
            outcome = TrainingOutcome(**read_json(exchange / "result.json"))
            if outcome.stopped_by != stop_reason:  # a stop asked after the last epoch came too late to matter
                model_path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(exchange / "model.pt", model_path)
        return NodeRun(
            int(node["node_rank"]), int(node["processes"]), str(node["run_token"]), cpu_seconds, workers_cpu_s, outcome
        )
    finally:
        shutil.rmtree(exchange, ignore_errors=True)


def _figure_path(settings: DistributedParams, run_token: str, node_rank: int) -> Path:
    return Path(str(settings.node_figures_dir)) / f"{run_token}-node{node_rank}.json"


def _gather(settings: DistributedParams, run_token: str, nodes: int, wait_s: float) -> list[NodeEnergy]:
    """The other nodes' figures, waiting up to `wait_s` for them to arrive; each file is removed once read."""
    deadline = time.monotonic() + wait_s
    paths = {rank: _figure_path(settings, run_token, rank) for rank in range(1, nodes)}
    while not all(path.exists() for path in paths.values()):
        if time.monotonic() > deadline:
            missing = sorted(rank for rank, path in paths.items() if not path.exists())
            raise MeasurementError(
                f"train: no energy figures from node(s) {missing} in {settings.node_figures_dir} after {wait_s:.0f} s;"
                " the record cannot hold the whole run's cost"
            )
        time.sleep(POLL_S * 10)
    figures = [NodeEnergy.model_validate(read_json(path)) for path in paths.values()]
    for path in paths.values():
        path.unlink(missing_ok=True)
    return figures


def account_nodes(
    settings: DistributedParams,
    record: EmissionRecord,
    record_file: Path,
    node: NodeRun,
    wait_s: float = NODE_FIGURES_WAIT_S,
) -> None:
    """Put the nodes into the stage's record once its measurement has stopped.

    Node 0 records the sum over every node (a figure that cannot be gathered turns the record `failed`, never a
    silent undercount); any other node leaves its own figures for node 0 and keeps its local record as is."""
    own = node_energy(record, node.node_rank, socket.gethostname(), node.processes, node.cpu_seconds)
    if node.node_rank != 0:
        write_json(_figure_path(settings, node.run_token, node.node_rank), own.model_dump(mode="json"))
        save_record(record_file, with_nodes(record, [own]))
        return
    nodes = node_count(settings)
    try:
        others = _gather(settings, node.run_token, nodes, wait_s) if nodes > 1 else []
    except MeasurementError as exc:
        save_record(record_file, with_nodes(record, [own]).model_copy(update={"status": "failed", "error": str(exc)}))
        raise
    save_record(record_file, with_nodes(record, [own, *others]))
