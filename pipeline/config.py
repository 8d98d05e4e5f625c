"""The reference pipeline's params.yaml, validated whole, once, at the edge into typed, frozen objects.

Its own sections (data, model, train, distill, export) sit beside the plugin's (carbon, budget, forecast,
mlflow, report, sci, usage), which come from `carbon_budget.config` unchanged; every stage reads params through
`load_params`, and a bad file gets the plugin's one message per problem, naming the key, the value and what is
allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from carbon_budget.config import (
    PARAMS_FILE,
    BudgetParams,
    CarbonParams,
    ForecastParams,
    GateParams,
    MlflowParams,
    PositiveFloat,
    ReportParams,
    SciParams,
    Section,
    UsageParams,
    lifetime_needs_usage,
    read_params_file,
    validate,
)

Fraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class DataParams(Section):
    source: Literal["digits", "csv", "npz"] = "digits"
    path: str | None = None
    label_column: str = "label"
    test_size: Fraction = 0.2
    val_size: Fraction = 0.1
    seed: int = 42
    clip_sigma: PositiveFloat | None = 5.0

    @model_validator(mode="after")
    def _path_for_files(self) -> DataParams:
        if self.source in ("csv", "npz") and not self.path:
            raise ValueError(f"data.path is required when data.source is {self.source!r}")
        if self.test_size + self.val_size >= 0.9:
            raise ValueError("data.test_size + data.val_size must leave at least 10% for training")
        return self


class ModelParams(Section):
    arch: Literal["mlp", "cnn"] = "mlp"
    hidden_sizes: list[Annotated[int, Field(gt=0)]] = [128, 64]
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    channels: list[Annotated[int, Field(gt=0)]] = [16, 32]


class DistributedParams(Section):
    """How `torchrun` launches training; a key left null is not passed, so torchrun's own PET_* variable
    (PET_NNODES, PET_RDZV_ENDPOINT, ...) or its default applies, as with torchrun run by hand."""

    enabled: bool = False
    nproc_per_node: Annotated[int, Field(gt=0)] = 2
    nnodes: Annotated[int, Field(gt=0)] | None = None
    rdzv_backend: Literal["c10d", "static", "etcd", "etcd-v2"] | None = None
    rdzv_endpoint: Annotated[str, Field(pattern=r"^[^\s:]+:[0-9]{1,5}$")] | None = None
    rdzv_id: Annotated[str, Field(min_length=1)] | None = None
    node_figures_dir: str | None = None

    @model_validator(mode="after")
    def _several_nodes_need_a_meeting_point(self) -> DistributedParams:
        if (self.nnodes or 1) > 1 and not self.node_figures_dir:
            raise ValueError(
                "train.distributed.node_figures_dir is required when nnodes > 1: a directory every node can"
                " write, where each node leaves its energy for node 0 to add up"
            )
        return self


class TrainParams(Section):
    epochs: Annotated[int, Field(gt=0)] = 20
    batch_size: Annotated[int, Field(gt=0)] = 64
    lr: PositiveFloat = 1e-3
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads torch trains with (null: its default, one per core). A model this small gains nothing from a
    # second thread and spins it: a 100-epoch digits MLP took 1.77 CPU-s on 2 threads against 1.21 on one, and
    # 3.9 against 0.85 beside one busy process on a 2-core host, which also made the energy 2x noisier
    threads: Annotated[int, Field(gt=0)] | None = 1
    patience: Annotated[int, Field(gt=0)] | None = None
    min_delta: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    distributed: DistributedParams = DistributedParams()


class StudentParams(Section):
    """A smaller MLP trained on the teacher's softened outputs plus the labels (Hinton et al., 2015)."""

    hidden_sizes: list[Annotated[int, Field(gt=0)]] = [32]
    temperature: PositiveFloat = 4.0
    alpha: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.7
    epochs: Annotated[int, Field(gt=0)] | None = None
    lr: PositiveFloat | None = 0.003  # a small student learns well at a higher rate (digits: 96.7% vs 94.4% at 1e-3)


# a student's name becomes a DVC stage (distill@NAME), a file name and an MLflow run name

StudentName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]

RESERVED_MODEL_NAMES = ("model", "teacher")


class DistillParams(Section):
    students: dict[StudentName, StudentParams] = {}

    @field_validator("students")
    @classmethod
    def _not_reserved(cls, students: dict[str, StudentParams]) -> dict[str, StudentParams]:
        for name in students:
            if name in RESERVED_MODEL_NAMES:
                raise ValueError(f"student name {name!r} is reserved; pick another (e.g. 'small')")
        return students

    def stage_names(self) -> list[str]:
        """The DVC stages `foreach` makes of the students, which are also their record names."""
        from pipeline.layout import distill_stage

        return [distill_stage(name) for name in self.students]


ExportFormat = Literal["torchscript", "onnx", "onnx_int8"]


class ExportParams(Section):
    formats: list[ExportFormat] = ["torchscript"]
    deploy: ExportFormat = "torchscript"
    opset: Annotated[int, Field(ge=9, le=21)] = 17
    max_accuracy_drop: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.01
    latency_batch_size: Annotated[int, Field(gt=0)] = 64
    # how long the deployed model (and its teacher) predicts under the meter for a measured energy per prediction
    inference_seconds: Annotated[float, Field(ge=0.1, le=600, allow_inf_nan=False)] = 1.0
    # CPU threads the artifacts predict with (torch and ONNX Runtime; null: their default, one per core). Beside a
    # busy process, two threads predicted 4.5x slower than one on a 2-core host (they spin waiting for each other),
    # and the energy per prediction with them
    threads: Annotated[int, Field(gt=0)] | None = 1
    registered_model_name: str | None = None
    model: str | None = None

    @model_validator(mode="after")
    def _deploy_is_exported(self) -> ExportParams:
        if not self.formats:
            raise ValueError("export.formats must name at least one format")
        if self.deploy not in self.formats:
            raise ValueError(f"export.deploy {self.deploy!r} must be one of export.formats {self.formats}")
        return self


class ModelBudgetParams(BudgetParams):
    """This pipeline always deploys a model, so its size budget is required."""

    model_size_mb: PositiveFloat


class Params(Section):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    forecast: ForecastParams = ForecastParams()
    export: ExportParams = ExportParams()
    carbon: CarbonParams = CarbonParams()
    budget: ModelBudgetParams
    mlflow: MlflowParams = MlflowParams()
    report: ReportParams = ReportParams()
    sci: SciParams = SciParams()
    usage: UsageParams = UsageParams()
    distill: DistillParams = DistillParams()

    @model_validator(mode="after")
    def _lifetime_has_usage(self) -> Params:
        lifetime_needs_usage(self.budget, self.usage)
        return self

    @model_validator(mode="after")
    def _deployable_model(self) -> Params:
        choice = self.export.model
        if choice is not None and choice != "teacher" and choice not in self.distill.students:
            raise ValueError(
                f"export.model {choice!r} must be 'teacher' or a student in distill.students"
                f" ({', '.join(self.distill.students) or 'none defined'})"
            )
        if choice is None and len(self.distill.students) > 1:
            raise ValueError(
                f"export.model must name the model to deploy when there are several students"
                f" ({', '.join(self.distill.students)}; or 'teacher')"
            )
        return self

    def gate(self) -> GateParams:
        """The sections the gate reads, as the plugin's gate takes them."""
        return GateParams(budget=self.budget, report=self.report, sci=self.sci, usage=self.usage)

    def deployed_model(self) -> str:
        """'teacher', or the student export deploys: the only student unless export.model names one."""
        if self.export.model is not None:
            return self.export.model
        return next(iter(self.distill.students), "teacher")


def parse_params(raw: object, source: str = PARAMS_FILE) -> Params:
    """Validate already-loaded YAML data into `Params`, or raise ParamsError listing every problem."""
    return validate(Params, raw, source)


def load_params(path: Path) -> Params:
    """Read and validate params.yaml."""
    return parse_params(read_params_file(path), source=str(path))
