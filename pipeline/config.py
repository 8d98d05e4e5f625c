"""params.yaml, validated once at the edge into typed, frozen objects.

Every stage and the CLI read params through `load_params`; a bad file gets one message that names the key,
the value and what is allowed, instead of a KeyError deep inside a stage.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ParamsError
from pipeline.files import parse_yaml

PARAMS_FILE = "params.yaml"

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
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


class ModelParams(_Section):
    arch: Literal["mlp", "cnn"] = "mlp"
    hidden_sizes: list[Annotated[int, Field(gt=0)]] = [128, 64]
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    channels: list[Annotated[int, Field(gt=0)]] = [16, 32]


class DistributedParams(_Section):
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


class TrainParams(_Section):
    epochs: Annotated[int, Field(gt=0)] = 20
    batch_size: Annotated[int, Field(gt=0)] = 64
    lr: PositiveFloat = 1e-3
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    patience: Annotated[int, Field(gt=0)] | None = None
    min_delta: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    distributed: DistributedParams = DistributedParams()


class ForecastParams(_Section):
    warmup_epochs: Annotated[int, Field(gt=0)] = 1
    on_overrun: Literal["abort", "warn"] = "abort"
    sample_every_s: PositiveFloat = 1.0
    min_window_s: PositiveFloat = 2.0


class StudentParams(_Section):
    """A smaller MLP trained on the teacher's softened outputs plus the labels (Hinton et al., 2015)."""

    hidden_sizes: list[Annotated[int, Field(gt=0)]] = [32]
    temperature: PositiveFloat = 4.0
    alpha: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.7
    epochs: Annotated[int, Field(gt=0)] | None = None
    lr: PositiveFloat | None = 0.003  # a small student learns well at a higher rate (digits: 96.7% vs 94.4% at 1e-3)


# a student's name becomes a DVC stage (distill@NAME), a file name and an MLflow run name
StudentName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
RESERVED_MODEL_NAMES = ("model", "teacher")


class DistillParams(_Section):
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


class ExportParams(_Section):
    formats: list[ExportFormat] = ["torchscript"]
    deploy: ExportFormat = "torchscript"
    opset: Annotated[int, Field(ge=9, le=21)] = 17
    max_accuracy_drop: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.01
    latency_batch_size: Annotated[int, Field(gt=0)] = 64
    registered_model_name: str | None = None
    model: str | None = None

    @model_validator(mode="after")
    def _deploy_is_exported(self) -> ExportParams:
        if not self.formats:
            raise ValueError("export.formats must name at least one format")
        if self.deploy not in self.formats:
            raise ValueError(f"export.deploy {self.deploy!r} must be one of export.formats {self.formats}")
        return self


class CarbonParams(_Section):
    country_iso_code: str = "USA"
    pue: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 1.0
    measure_power_secs: PositiveFloat = 5.0
    intensity_g_per_kwh: PositiveFloat | None = None
    tracking_mode: Literal["process", "machine"] = "process"

    @field_validator("country_iso_code")
    @classmethod
    def _known_country(cls, code: str) -> str:
        from pipeline import grid

        known = grid.known_countries()
        if code not in known:
            close = [c for c in known if c[0] == code[:1].upper()][:12]
            raise ValueError(
                f"unknown country code {code!r}: use an ISO 3166-1 alpha-3 code codecarbon has grid data for"
                f" (e.g. {', '.join(close) or 'USA, FRA, DEU'})"
            )
        return code


class StageBudget(_Section):
    energy_kwh: PositiveFloat | None = None
    co2_kg: PositiveFloat | None = None
    duration_s: PositiveFloat | None = None


class BudgetParams(_Section):
    """The budgets the gate judges. Model size and accuracy are judged only when set: a project that ships no
    model (any DVC project under `carbon-budget track`) has energy and CO2 budgets alone."""

    energy_kwh: PositiveFloat
    co2_kg: PositiveFloat
    model_size_mb: PositiveFloat | None = None
    min_accuracy: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    stages: dict[str, StageBudget] = {}


class ModelBudgetParams(BudgetParams):
    """This pipeline always deploys a model, so its size budget is required."""

    model_size_mb: PositiveFloat


class MlflowParams(_Section):
    experiment: str = "carbon-budget"


class Params(_Section):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    forecast: ForecastParams = ForecastParams()
    export: ExportParams = ExportParams()
    carbon: CarbonParams = CarbonParams()
    budget: ModelBudgetParams
    mlflow: MlflowParams = MlflowParams()
    distill: DistillParams = DistillParams()

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

    def deployed_model(self) -> str:
        """'teacher', or the student export deploys: the only student unless export.model names one."""
        if self.export.model is not None:
            return self.export.model
        return next(iter(self.distill.students), "teacher")

    def section(self, name: str) -> dict[str, Any]:
        """A section as plain data, as a stage records what it ran with. A dotted name reaches inside one
        (`distill.students.small`), so a stage that reads one student is not stale when another is added."""
        found = self.find_section(name)
        if found is None:
            raise KeyError(name)
        return found

    def find_section(self, name: str) -> dict[str, Any] | None:
        """`section(name)`, or None when these params have no such section: a record may name a student since
        removed."""
        head, _, rest = name.partition(".")
        if head not in type(self).model_fields:
            return None
        value: Any = getattr(self, head).model_dump(mode="json")
        for key in rest.split(".") if rest else ():
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return dict(value) if isinstance(value, dict) else None


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `StageBudget`, `X | None` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at `loc`, to list the keys it allows."""
    model: type[BaseModel] | None = Params
    for part in loc[:-1]:
        if model is None:
            return None
        if part in model.model_fields:
            model = _submodel(model.model_fields[part].annotation)
        # any other part is a free dict key (a stage name): its values share one model
    return model


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in loc) or "(top level)"
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        owner = _model_at(loc)
        allowed = ", ".join(owner.model_fields) if owner else "see README"
        return f"unknown key {key} (allowed here: {allowed})"
    if error["type"] == "missing":
        return f"missing key {key}"
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = "NaN" if isinstance(value, float) and math.isnan(value) else repr(value)
    if isinstance(value, dict):
        return f"{key}: {message}"
    return f"{key} = {shown}: {message}"


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Validate already-loaded YAML data into `Params`, or raise ParamsError listing every problem."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe(dict(err))}" for err in exc.errors())
        raise ParamsError(f"{source} is not valid:\n{problems}") from None


def load_params(path: Path) -> Params:
    """Read and validate params.yaml."""
    return parse_params(read_params_file(path), source=str(path))


SectionT = TypeVar("SectionT", bound=_Section)


def read_params_file(path: Path, missing_ok: bool = False) -> dict[str, Any]:
    """A params file as plain data, for the commands that read single sections of a file they do not own."""
    if missing_ok and not path.is_file():
        return {}
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ParamsError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return raw


def parse_section(raw: dict[str, Any], name: str, model: type[SectionT], source: str) -> SectionT:
    """One top-level section validated on its own, so a foreign project's other keys are never judged; an absent
    section gets the model's defaults (a ParamsError when the model has required keys)."""
    section = raw.get(name)
    try:
        return model.model_validate({} if section is None else section)
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe({**err, 'loc': (name, *err['loc'])})}" for err in exc.errors())
        raise ParamsError(f"{source} is not valid:\n{problems}") from None


def load_carbon(path: Path) -> CarbonParams:
    """Only the `carbon:` section, for a project that is not this pipeline (`carbon-budget track`): defaults
    when the file or the section is absent, the same clear message when a value is wrong."""
    return parse_section(read_params_file(path, missing_ok=True), "carbon", CarbonParams, str(path))
