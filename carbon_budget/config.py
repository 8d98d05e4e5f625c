"""The plugin's sections of params.yaml (`carbon`, `budget`, `forecast`, `mlflow`), validated once at the edge
into typed, frozen objects, and the one way every params error is worded.

A project's own sections are never judged here: each section is validated on its own (`parse_section`), so a
team's `prepare:` or `train:` keys are theirs. A bad value gets one message that names the key, the value and
what is allowed, instead of a KeyError deep inside a stage. The reference pipeline builds its whole-file model
on these sections and words its errors with `validate`.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from carbon_budget.errors import ParamsError
from carbon_budget.files import parse_yaml

PARAMS_FILE = "params.yaml"

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Section(BaseModel):
    """A params section: unknown keys are refused (a typo never passes silently), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ForecastParams(Section):
    warmup_epochs: Annotated[int, Field(gt=0)] = 1
    on_overrun: Literal["abort", "warn"] = "abort"
    sample_every_s: PositiveFloat = 1.0
    min_window_s: PositiveFloat = 2.0


DEFAULT_RAM_W_PER_GB = 0.392  # W per GB held: the Cloud Carbon Footprint methodology's memory coefficient
# live intensity providers, and whether each needs a zone after a colon (`electricitymaps:FR`; `ukgrid` alone)
INTENSITY_PROVIDERS = {"electricitymaps": True, "watttime": True, "ukgrid": False, "carbon-aware-sdk": True}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_-]+):(.*)$")


def intensity_provider(source: str) -> tuple[str, str] | None:
    """(provider, zone) when `source` names a live intensity provider, None when it names a file; ValueError for a
    provider spec that is malformed (no zone, a zone where none is taken, a provider nobody offers). A file whose
    name starts with `word:` is written `./word:...`."""
    text = source.strip()
    match = _SCHEME.match(text)
    name, zone = (match.group(1), match.group(2)) if match else (text, None)
    if name not in INTENSITY_PROVIDERS:
        if match is None:
            return None
        raise ValueError(
            f"unknown intensity provider {name!r}: use a file path, or one of electricitymaps:ZONE, watttime:REGION,"
            " ukgrid, carbon-aware-sdk:LOCATION"
        )
    if not INTENSITY_PROVIDERS[name]:
        if zone is not None:
            raise ValueError(f"{name} takes no zone (write {name!r} alone)")
        return name, "GB"
    if not zone or any(c.isspace() for c in zone):
        upper = "REGION" if name == "watttime" else "LOCATION" if name == "carbon-aware-sdk" else "ZONE"
        raise ValueError(f"{name} needs a zone without spaces: {name}:{upper}")
    return name, zone


class CarbonParams(Section):
    country_iso_code: str = "USA"
    pue: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 1.0
    measure_power_secs: PositiveFloat = 5.0
    intensity_g_per_kwh: PositiveFloat | None = None
    tracking_mode: Literal["process", "machine"] = "process"
    # RAM power per GB the stage holds (process mode): the Cloud Carbon Footprint methodology's memory coefficient
    ram_w_per_gb: PositiveFloat = DEFAULT_RAM_W_PER_GB
    # the CPU's real TDP in watts (all sockets), in place of codecarbon's table or fallback; its load x this figure
    # is then the CPU's power, sensor or not (codecarbon's `force_cpu_power`)
    cpu_tdp_w: PositiveFloat | None = None
    # a grid intensity over time to charge CO2 at (a file relative to the project root, or a live provider); where
    # it cannot be had or does not cover a run, the record falls back to the figure above, saying why
    intensity_series: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("intensity_series")
    @classmethod
    def _intensity_source(cls, source: str | None) -> str | None:
        if source is not None:
            intensity_provider(source)
        return source

    @field_validator("country_iso_code")
    @classmethod
    def _known_country(cls, code: str) -> str:
        from carbon_budget import grid

        known = grid.known_countries()
        if code not in known:
            close = [c for c in known if c[0] == code[:1].upper()][:12]
            raise ValueError(
                f"unknown country code {code!r}: use an ISO 3166-1 alpha-3 code codecarbon has grid data for"
                f" (e.g. {', '.join(close) or 'USA, FRA, DEU'})"
            )
        return code


class StageBudget(Section):
    energy_kwh: PositiveFloat | None = None
    co2_kg: PositiveFloat | None = None
    duration_s: PositiveFloat | None = None


class BudgetParams(Section):
    """The budgets the gate judges. Model size and accuracy are judged only when set: a project that ships no
    model (any DVC project under `carbon-budget track`) has energy and CO2 budgets alone; so are the budgets on
    the deployed model's use (docs/sci.md)."""

    energy_kwh: PositiveFloat
    co2_kg: PositiveFloat
    model_size_mb: PositiveFloat | None = None
    min_accuracy: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    stages: dict[str, StageBudget] = {}
    # stages that owe the gate no emission record, each with the reason: in params, so an exemption shows in review
    exempt: dict[str, Annotated[str, Field(min_length=1)]] = {}
    # the deployed model's measured cost per 1,000 predictions (export's `deploy.inference`)
    inference_wh_per_1k: PositiveFloat | None = None
    inference_co2_g_per_1k: PositiveFloat | None = None
    # training (every stage) plus the expected inference of `usage.predictions`, operational CO2
    lifetime_co2_kg: PositiveFloat | None = None
    # Software Carbon Intensity (ISO/IEC 21031): (E x I + M) per functional unit, in g CO2-eq
    sci_g_per_run: PositiveFloat | None = None
    sci_g_per_1k_predictions: PositiveFloat | None = None


class SciParams(Section):
    """SCI's embodied term M = TE x (T / EL) x RS: estimates, each with a published default (docs/sci.md)."""

    # TE: the machine's embodied emissions. Cloud Carbon Footprint's base manufacturing emissions of a mono-socket,
    # low-DRAM commodity rack server (cloud-carbon-coefficients, ccfcoef/constants.py)
    embodied_kg: PositiveFloat = 1000.0
    # EL: its expected life, over which TE is spread evenly (the same source's rack-server lifespan)
    lifetime_years: PositiveFloat = 4.0
    # RS: the share of the machine the work reserved. 1.0: the whole machine (a laptop, or a CI runner running one
    # job); a 2-vCPU slice of a 64-thread host is 2/64
    resource_share: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1.0


class PredictionUsage(Section):
    """How much the deployed model is expected to predict."""

    per_day: PositiveFloat
    days: PositiveFloat

    @property
    def total(self) -> float:
        return self.per_day * self.days


class UsageParams(Section):
    """The expected use of the deployed model; absent, the gate shows no lifetime footprint."""

    predictions: PredictionUsage | None = None


def lifetime_needs_usage(budget: BudgetParams, usage: UsageParams) -> None:
    """A lifetime budget cannot be judged without the expected use it covers: a ValueError saying which keys."""
    if budget.lifetime_co2_kg is not None and usage.predictions is None:
        raise ValueError(
            f"budget.lifetime_co2_kg = {budget.lifetime_co2_kg!r} needs usage.predictions (per_day and days: how"
            " many predictions the deployed model will serve, and for how long)"
        )


class MlflowParams(Section):
    experiment: str = "carbon-budget"


class ReportParams(Section):
    """How `carbon-budget report` tells a change from noise (docs/pr-report.md)."""

    # the band a change must leave to be called a regression or an improvement, when no repeated measurement
    # gives one: five forced reruns of one commit moved the train stage's energy by 7.5 % on a quiet 2-core host
    noise_pct: Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)] = 10.0
    # side-by-side remeasurement in the pull-request workflow: how many alternated runs of base and head (0: off)
    remeasure: Annotated[int, Field(ge=0, le=20)] = 0
    # the same, when the pull-request workflow asks (`carbon-budget report --pull-request`); 0: the base branch's
    # executions in MLflow give the band, else the default
    pull_request_remeasure: Annotated[int, Field(ge=0, le=20)] = 0


class GateParams(BaseModel):
    """What the gate reads from params.yaml, validated together: the budgets, the noise band, SCI's embodied
    terms and the expected use."""

    model_config = ConfigDict(frozen=True)
    budget: BudgetParams
    report: ReportParams = ReportParams()
    sci: SciParams = SciParams()
    usage: UsageParams = UsageParams()


def gate_params(raw: dict[str, Any], source: str) -> GateParams:
    """The gate's sections of a params file, each validated on its own, then checked against one another."""
    parsed = GateParams(
        budget=parse_section(raw, "budget", BudgetParams, source),
        report=parse_section(raw, "report", ReportParams, source),
        sci=parse_section(raw, "sci", SciParams, source),
        usage=parse_section(raw, "usage", UsageParams, source),
    )
    try:
        lifetime_needs_usage(parsed.budget, parsed.usage)
    except ValueError as exc:
        raise ParamsError(f"{source} is not valid:\n  - {exc}") from None
    return parsed


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `StageBudget`, `X | None` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at `loc`, to list the keys it allows."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if model is None:
            return None
        if part in model.model_fields:
            model = _submodel(model.model_fields[part].annotation)
        # any other part is a free dict key (a stage name): its values share one model
    return model


def _describe(root: type[BaseModel], at: tuple[str, ...], error: dict[str, Any]) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in (*at, *loc)) or "(top level)"
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        owner = _model_at(root, loc)
        allowed = ", ".join(owner.model_fields) if owner else "see docs/params.md"
        return f"unknown key {key} (allowed here: {allowed})"
    if error["type"] == "missing":
        return f"missing key {key}"
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = "NaN" if isinstance(value, float) and math.isnan(value) else repr(value)
    if isinstance(value, dict):
        return f"{key}: {message}"
    return f"{key} = {shown}: {message}"


ModelT = TypeVar("ModelT", bound=BaseModel)


def validate(model: type[ModelT], raw: Any, source: str, at: tuple[str, ...] = ()) -> ModelT:
    """`raw` validated into `model`, or one ParamsError listing every problem, each naming its key (behind `at`,
    the section's place in the file), the value and what is allowed."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe(model, at, dict(err))}" for err in exc.errors())
        raise ParamsError(f"{source} is not valid:\n{problems}") from None


def read_params_file(path: Path, missing_ok: bool = False) -> dict[str, Any]:
    """A params file as plain data, for the commands that read single sections of a file they do not own.

    Each caller gets its own copy; the file is parsed once per version of it (its modification time and size):
    the gate compares it with dvc.lock once per stage, and parsing was a sixth of its time."""
    if missing_ok and not path.is_file():
        return {}
    try:
        info = path.stat()
        raw = _parsed_params(str(path.resolve()), info.st_mtime_ns, info.st_size)
    except OSError as exc:
        raise ParamsError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return copy.deepcopy(raw)


@functools.lru_cache(maxsize=8)
def _parsed_params(path: str, mtime_ns: int, size: int) -> Any:
    """The parsed file at `path` as it was at (`mtime_ns`, `size`); callers copy it before handing it out."""
    return parse_yaml(Path(path).read_text(encoding="utf-8")) or {}


def parse_section(raw: dict[str, Any], name: str, model: type[ModelT], source: str) -> ModelT:
    """One top-level section validated on its own, so a foreign project's other keys are never judged; an absent
    section gets the model's defaults (a ParamsError when the model has required keys)."""
    section = raw.get(name)
    return validate(model, {} if section is None else section, source, at=(name,))


def section_value(raw: dict[str, Any], name: str) -> Any:
    """What params.yaml holds at a dotted name (`train`, `distill.students.small`), as DVC reads it; None when
    absent. A record keeps these values, so the gate can tell a record measured with other params."""
    value: Any = raw
    for key in name.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (`train.epochs`), the names `dvc params diff` and MLflow use."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out |= flatten(item, f"{prefix}.{key}" if prefix else str(key))
    return out


def load_carbon(path: Path) -> CarbonParams:
    """Only the `carbon:` section, for a project that is not this pipeline (`carbon-budget track`): defaults
    when the file or the section is absent, the same clear message when a value is wrong."""
    return parse_section(read_params_file(path, missing_ok=True), "carbon", CarbonParams, str(path))
