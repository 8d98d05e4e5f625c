"""The emission record: the one contract between stages, gate, report and MLflow publishing.

A record is the cost of producing a stage's outputs. It says how each figure was obtained, which outputs it
paid for (by hash, so a stale record cannot vouch for a new model), and which files hold the stage's metrics,
plots and artifacts, so the publisher can log a stage without knowing what the stage did.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from carbon_budget.errors import RecordError
from carbon_budget.files import read_json, write_json

SCHEMA_VERSION: Literal["1"] = "1"

NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _inside_project(path: str) -> str:
    if not path or Path(path).is_absolute() or ".." in Path(path).parts:
        raise ValueError(f"{path!r} is not a path inside the project (relative, without ..)")
    return path


# a file a record names for the publisher: inside the project, so a record cannot make us read or log elsewhere
ProjectPath = Annotated[str, AfterValidator(_inside_project)]
Method = Annotated[str, Field(pattern=r"^(measured:[a-z_]+|estimated:[a-z_]+|none)$")]


class Methods(BaseModel):
    """How each component's energy was obtained: `measured:rapl`, `estimated:cpu_load_x_tdp`, `none`, ..."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cpu: Method
    gpu: Method
    ram: Method

    def is_measured(self) -> bool:
        """True only when every component that drew energy was read from a sensor."""
        return all(m.startswith("measured:") or m == "none" for m in (self.cpu, self.gpu, self.ram))

    def summary(self) -> str:
        """One word for tables: measured, estimated, or mixed."""
        return summarize_methods([self.cpu, self.gpu, self.ram])


def summarize_methods(methods: Iterable[str]) -> str:
    """measured, estimated, mixed, or none: the one word every table uses for how figures were obtained."""
    kinds = {str(m).split(":")[0] for m in methods if m != "none"}
    return kinds.pop() if len(kinds) == 1 else "mixed" if kinds else "none"


def measurement_of(record: Mapping[str, Any]) -> str:
    """The one word for a record as plain data: its methods summarised, or the word a line the gate already
    summarised carries (the tool's own, as metrics/gate.json keeps it)."""
    if "methods" not in record and isinstance(record.get("measurement"), str):
        return str(record["measurement"])
    return summarize_methods((record.get("methods") or {}).values())


class Hardware(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cpu_model: str
    cpu_count: int
    gpu_model: str
    gpu_count: int
    ram_total_gb: NonNegative
    # the TDP (W, whole machine) a CPU estimate used, and where it came from; None where a sensor measured the CPU
    cpu_tdp_w: NonNegative | None = None
    cpu_tdp_source: str = ""
    gpu_scope: str = ""  # what the GPU figure covers, when there is a GPU: NVML's counter is the whole device's


class NodeEnergy(BaseModel):
    """One machine's share of a stage that ran on several (distributed training): measured once per machine,
    by the one stage process that launched that machine's workers, so no machine's power is counted twice."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    node_rank: Annotated[int, Field(ge=0)]
    hostname: str
    processes: Annotated[int, Field(gt=0)]
    cpu_seconds: NonNegative  # the node's training: torchrun and every training process on it
    duration_s: NonNegative
    energy_kwh: NonNegative
    cpu_energy_kwh: NonNegative
    gpu_energy_kwh: NonNegative
    ram_energy_kwh: NonNegative
    co2_kg: NonNegative
    methods: Methods


class EmissionRecord(BaseModel):
    """What one stage execution cost, and what it produced."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal["1"] = SCHEMA_VERSION
    record_id: str
    stage: str
    # `running`: a checkpoint, written every few seconds while the stage runs; left behind, the stage was killed
    status: Literal["completed", "failed", "aborted", "running"]
    error: str | None = None
    started_at: str
    ended_at: str
    duration_s: NonNegative
    energy_kwh: NonNegative
    cpu_energy_kwh: NonNegative
    gpu_energy_kwh: NonNegative
    ram_energy_kwh: NonNegative
    co2_kg: NonNegative
    carbon_intensity_g_per_kwh: NonNegative
    # where the intensity came from (named like carbon_intensity_g_per_kwh); records written before 0.3.0 called
    # it `intensity_source`, and a base branch's committed records still do
    carbon_intensity_source: str = Field(validation_alias=AliasChoices("carbon_intensity_source", "intensity_source"))
    country_iso_code: str | None
    pue: Annotated[float, Field(ge=1, allow_inf_nan=False)]
    tracking_mode: Literal["process", "machine"]
    methods: Methods
    hardware: Hardware
    codecarbon_version: str
    params: dict[str, Any] = {}
    outputs: dict[ProjectPath, str] = {}
    metrics_files: list[ProjectPath] = []
    artifacts: list[ProjectPath] = []
    extra_metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    nodes: list[NodeEnergy] = []  # per machine, when the stage ran on several processes; the totals are their sum

    @model_serializer(mode="wrap")
    def _omit_nodes_when_single_process(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Records of ordinary stages stay exactly as they were before `nodes` existed."""
        data: dict[str, Any] = handler(self)
        if not self.nodes:
            data.pop("nodes", None)
        return data

    def figures(self) -> dict[str, float]:
        """The record's numbers as metric names with units, plus readable-unit twins for the MLflow UI."""
        return {
            "duration_s": self.duration_s,
            "energy_kwh": self.energy_kwh,
            "cpu_energy_kwh": self.cpu_energy_kwh,
            "gpu_energy_kwh": self.gpu_energy_kwh,
            "ram_energy_kwh": self.ram_energy_kwh,
            "co2_kg": self.co2_kg,
            "energy_wh": self.energy_kwh * 1000,
            "co2_g": self.co2_kg * 1000,
            "carbon_intensity_g_per_kwh": self.carbon_intensity_g_per_kwh,
            **self._forecast_error(),
            **self._node_figures(),
        }

    def doubts(self) -> list[str]:
        """Why a completed record's figures cannot vouch for its stage: no energy at all, no component measured
        or estimated, parts that do not add up to the total, or CO2 that is not energy x intensity."""
        found = []
        if self.energy_kwh <= 0:
            found.append("it holds no energy at all")
        if (self.methods.cpu, self.methods.gpu, self.methods.ram) == ("none", "none", "none"):
            found.append("no component of its energy was measured or estimated (every method is `none`)")
        parts = self.cpu_energy_kwh + self.gpu_energy_kwh + self.ram_energy_kwh
        if not _close(parts, self.energy_kwh):
            found.append(
                f"its parts (cpu + gpu + ram = {parts:.6g} kWh) do not add up to its total {self.energy_kwh:.6g}"
            )
        co2_kg = self.energy_kwh * self.carbon_intensity_g_per_kwh / 1000
        if not _close(co2_kg, self.co2_kg):
            found.append(
                f"its CO2 {self.co2_kg:.6g} kg is not its energy x intensity ({co2_kg:.6g} kg at"
                f" {self.carbon_intensity_g_per_kwh:g} g/kWh)"
            )
        return found

    def _node_figures(self) -> dict[str, float]:
        """Each machine's energy beside the total, when there was more than one."""
        if len(self.nodes) < 2:
            return {}
        return {f"node{n.node_rank}.energy_kwh": n.energy_kwh for n in self.nodes}

    def _forecast_error(self) -> dict[str, float]:
        """How far a forecast made during the stage was from what the stage really cost."""
        forecast = self.extra_metrics.get("forecast_energy_kwh")
        if forecast is None or self.energy_kwh <= 0:
            return {}
        return {"forecast_error_pct": (forecast - self.energy_kwh) / self.energy_kwh * 100}


def _close(a: float, b: float) -> bool:
    """Equal to the rounding of a sum of a few floats (records are written with full float precision)."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


# a node's figures that add up to the stage's; duration and methods stay each node's own
SUMMED_OVER_NODES = ("energy_kwh", "cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh", "co2_kg")


def node_energy(
    record: EmissionRecord, node_rank: int, hostname: str, processes: int, cpu_seconds: float
) -> NodeEnergy:
    """The figures of a record measured on one machine, as that machine's entry in a multi-node record."""
    return NodeEnergy(
        node_rank=node_rank,
        hostname=hostname,
        processes=processes,
        cpu_seconds=cpu_seconds,
        **record.model_dump(include={"duration_s", "methods", *SUMMED_OVER_NODES}),
    )


def with_nodes(record: EmissionRecord, nodes: list[NodeEnergy]) -> EmissionRecord:
    """`record` (measured on node 0) with its totals replaced by the sum over every node, each node kept.

    Duration, methods and hardware stay node 0's: the stage lasted as long as its launching node waited, and a
    node whose figures were got another way says so in its own entry."""
    ordered = sorted(nodes, key=lambda n: n.node_rank)
    return record.model_copy(
        update={
            "nodes": ordered,
            **{name: math.fsum(getattr(n, name) for n in ordered) for name in SUMMED_OVER_NODES},
        }
    )


def timestamp(epoch_s: float) -> str:
    """A record's timestamp: UTC, to the millisecond."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


def span_s(started_at: str, ended_at: str) -> float:
    """Seconds from one record timestamp to another. A record's `duration_s` is exactly its timestamps' span (to the
    millisecond they carry), so that records line up in time and SCI can take the union of their intervals."""
    return max(0.0, (datetime.fromisoformat(ended_at) - datetime.fromisoformat(started_at)).total_seconds())


def file_md5(path: Path) -> str:
    """The same digest DVC records for a file, so records and dvc.lock can be compared."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_drift(path: Path, digest: str) -> str | None:
    """How a file parted from the md5 it was recorded with ("is missing", "has changed"), or None if it did not:
    the one test behind every stale-record reason, for outputs a record paid for and inputs dvc.lock lists."""
    if not path.is_file():
        return "is missing"
    return "has changed" if file_md5(path) != digest else None


def save_record(path: Path, record: EmissionRecord) -> None:
    write_json(path, record.model_dump(mode="json"))


def load_record(path: Path) -> EmissionRecord:
    """Read and validate a record; anything short of a complete, valid record is a RecordError naming the file."""
    try:
        raw = read_json(path)
    except FileNotFoundError:
        raise RecordError(f"{path}: emission record is missing (did the stage run?)") from None
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: emission record is unreadable or truncated ({exc})") from None
    try:
        record = EmissionRecord.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RecordError(f"{path}: emission record is invalid at {where}: {first['msg']}") from None
    if not all(math.isfinite(v) for v in record.figures().values()):
        raise RecordError(f"{path}: emission record holds a non-finite figure")
    return record
