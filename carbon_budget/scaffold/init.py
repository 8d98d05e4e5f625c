"""`carbon-budget init`: add a carbon budget to an existing DVC project, editing its files the way a person would.

The chosen stages' commands run under `carbon-budget track` and declare their emission records as outputs, a
`carbon_gate` stage depends on every record (it judges them and publishes the execution to MLflow), the params
file gains `budget:` and `carbon:` sections, and .gitignore the files publishing leaves behind. YAML files
are edited through ruamel.yaml's round trip, in the layout the file already uses, so the user's comments, key
order and quoting stay as they were. Run again, it adopts the stages added since (the gate names each stage that
nothing measures) and leaves the ones it wrapped alone; with nothing new it changes nothing. A `foreach` or
`matrix` stage is left for the user to wrap or exempt, with a note; anything else it cannot understand (a `wdir`,
a params file that is not a mapping) is refused with a message, never guessed at.
"""

from __future__ import annotations

import difflib
import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from shlex import quote
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from carbon_budget import layout
from carbon_budget.config import PARAMS_FILE, BudgetParams, CarbonParams, parse_section
from carbon_budget.errors import CarbonBudgetError
from carbon_budget.files import write_text_atomic
from carbon_budget.gate.accounting import INIT_GATE_STAGE
from carbon_budget.records.dvcyaml import DVC_FILE, declared_outputs, entry_path
from carbon_budget.scaffold.ci import workflows
from carbon_budget.scaffold.commands import GATE, TRACK, command_lines, runs, stage_commands, tracked_record, wrap

GATE_COMMAND = "carbon-budget gate --publish"
# Layouts tried, most common first, until one reproduces the file byte for byte: (mapping, sequence, offset).
_LAYOUTS = [(m, *s) for m, s in itertools.product((2, 4), ((4, 2), (2, 0), (4, 0), (2, 2), (6, 4)))]
_UNSUPPORTED_KEYS = ("foreach", "matrix", "do")

BUDGET_SECTION = """\
# Carbon budget (`carbon-budget init`): `dvc repro` fails when the tracked stages cost more than this.
budget:
  energy_kwh: 1.0       # kWh, all tracked stages together: lower it once `carbon-budget gate` shows a run's cost
  co2_kg: 0.5           # kg CO2-eq, at the carbon intensity below
  stages: {}            # per-stage limits, e.g. {train: {energy_kwh: 0.5, duration_s: 3600}}
"""
CARBON_SECTION = """\
# How energy is measured and turned into CO2 (codecarbon, offline: no network).
carbon:
  country_iso_code: USA       # grid whose average intensity is charged (ISO 3166-1 alpha-3)
  intensity_g_per_kwh: null   # your grid's or contract's figure, overriding the country average
  pue: 1.0                    # data-centre overhead; 1.0 for a laptop or a CI runner
  tracking_mode: process      # process: charge each stage its own CPU; machine: the whole machine
"""
# What publishing leaves in the work tree, kept out of git: the local MLflow store, the outbox, the energy picture.
IGNORED = ("/mlflow.db", "/mlflow.db.lock", "/mlartifacts/", f"/{layout.STATE_DIR}/", f"/{layout.ENERGY_PICTURE}")
GITIGNORE = Path(".gitignore")


@dataclass(frozen=True)
class FileChange:
    """One file's text before and after; `before` is empty for a file that does not exist yet."""

    path: Path
    before: str
    after: str

    def diff(self) -> str:
        name = self.path.as_posix()
        lines = difflib.unified_diff(
            self.before.splitlines(keepends=True), self.after.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
        return "".join(lines)


@dataclass(frozen=True)
class Plan:
    """What `init` would change; `changes` is empty when the project already has its budget."""

    changes: list[FileChange]
    notes: list[str] = field(default_factory=list)


def _round_trip(text: str) -> tuple[YAML, bool]:
    """A ruamel.yaml round-tripper in the layout this text already uses, so untouched lines stay untouched; False
    when no layout reproduces the text (mixed indentation), and the first, DVC's own, is used."""
    candidates = []
    for mapping, sequence, offset in _LAYOUTS:
        yaml = YAML()
        yaml.preserve_quotes = True
        yaml.width = 4096  # never re-wrap a long command
        yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
        yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
        if not text.strip() or _dump(yaml, yaml.load(text)) == text:
            return yaml, True
        candidates.append(yaml)
    return candidates[0], False


def _dump(yaml: YAML, document: Any) -> str:
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()


def _load(path: Path, text: str, notes: list[str]) -> tuple[YAML, Any]:
    try:
        yaml, faithful = _round_trip(text)
        document = yaml.load(text)
    except YAMLError as exc:
        raise CarbonBudgetError(f"cannot edit {path}: it is not valid YAML ({exc})") from None
    if not faithful:
        notes.append(f"{path}: its indentation is not one layout throughout; the diff shows lines re-indented")
    return yaml, document


def _commands(name: str, stage: Any) -> list[str]:
    """The commands of a stage init is asked to wrap, or a refusal saying why it cannot."""
    if not isinstance(stage, dict):
        raise CarbonBudgetError(f"stage {name!r} is not a mapping")
    unsupported = [key for key in (*_UNSUPPORTED_KEYS, "wdir") if key in stage and stage[key] not in (".", None)]
    if unsupported:
        raise CarbonBudgetError(
            f"stage {name!r} uses {unsupported[0]!r}, which `carbon-budget init` cannot wrap: wrap its cmd in"
            f" `carbon-budget track --stage NAME --` by hand, or leave it out with --stages"
        )
    commands = command_lines(stage.get("cmd"))
    if not commands:
        raise CarbonBudgetError(f"stage {name!r} has no cmd init understands (a string or a list of strings)")
    return commands


def _generated(stage: Any) -> str | None:
    """The key (`foreach`, `matrix`) by which DVC makes several stages of this one, which init does not wrap."""
    return next((key for key in ("foreach", "matrix") if isinstance(stage, dict) and key in stage), None)


def _record_of(name: str, commands: list[str]) -> str | None:
    """The record a stage already writes under `track`, None when it is not tracked yet."""
    if not any(runs(c, TRACK) for c in commands):
        return None
    if len(commands) > 1:
        raise CarbonBudgetError(f"stage {name!r} runs `carbon-budget track` as one of several commands: make it one")
    record = tracked_record(commands[0])
    if not record.startswith(layout.RECORDS_DIR.as_posix() + "/"):
        raise CarbonBudgetError(
            f"stage {name!r} writes its emission record to {record}; the gate reads records under"
            f" {layout.RECORDS_DIR.as_posix()}/"
        )
    return record


def _list(mapping: CommentedMap, key: str, where: str) -> CommentedSeq:
    """The list under `key`, created when absent; a refusal when it is something else."""
    if key not in mapping or mapping[key] is None:
        mapping[key] = CommentedSeq()
    if not isinstance(mapping[key], list):
        raise CarbonBudgetError(f"{where}: `{key}` is not a list")
    value: CommentedSeq = mapping[key]
    return value


def _check_no_overlap(stages: CommentedMap, owner: str, record: str) -> None:
    """DVC refuses two stages owning one path, or a directory output around another stage's output."""
    for name, stage in stages.items():
        for output in declared_outputs(stage):
            path = output.rstrip("/")
            if record.startswith(path + "/") or (path == record and name != owner):
                raise CarbonBudgetError(
                    f"stage {name!r} declares the output {output}, which holds {owner!r}'s emission record"
                    f" {record}: DVC would refuse the overlap"
                )


def _has_budget_params(params: list[Any], params_file: str) -> bool:
    """Whether the gate stage already lists the `budget` section of the params file as a DVC param."""
    for entry in params:
        if entry == "budget" and params_file == PARAMS_FILE:
            return True
        if isinstance(entry, dict) and "budget" in (entry.get(params_file) or []):
            return True
    return False


def _wrap_stage(stages: CommentedMap, name: str, params_file: str) -> None:
    """Run one stage under `track` (unless it already is) and declare its record as an uncached output."""
    stage = stages[name]
    commands = _commands(name, stage)
    record = _record_of(name, commands)
    if record is None:
        stage["cmd"] = wrap(name, commands, params_file)
        record = layout.record_path(name).as_posix()
    _check_no_overlap(stages, name, record)
    if record not in declared_outputs(stage):
        entry = CommentedMap()
        entry[record] = CommentedMap(cache=False)
        _list(stage, "outs", f"stage {name!r}").append(entry)


def _add_gate(stages: CommentedMap, records: list[str], params_file: str) -> None:
    """The gate stage depends on every record, the list of stages and the budget; an existing one keeps what the
    user added."""
    if layout.STAGES_STAGE not in stages:
        stages[layout.STAGES_STAGE] = CommentedMap(
            cmd=layout.STAGES_COMMAND,
            always_changed=True,
            outs=CommentedSeq([CommentedMap({layout.STAGES_LIST.as_posix(): CommentedMap(cache=False)})]),
        )
    gate = stages.get(INIT_GATE_STAGE)
    if gate is None:
        gate = stages[INIT_GATE_STAGE] = CommentedMap()
        gate["cmd"] = GATE_COMMAND if params_file == PARAMS_FILE else f"{GATE_COMMAND} --params {quote(params_file)}"
    deps = _list(gate, "deps", f"stage {INIT_GATE_STAGE!r}")
    # the list of stages: the gate accounts for every stage, so a stage added or removed must rerun it
    deps.extend(r for r in [layout.STAGES_LIST.as_posix(), *records] if r not in {entry_path(d) for d in deps})

    params = _list(gate, "params", f"stage {INIT_GATE_STAGE!r}")
    if not _has_budget_params(params, params_file):
        params.append("budget" if params_file == PARAMS_FILE else CommentedMap({params_file: ["budget"]}))


def _plan_dvc_yaml(path: Path, text: str, names: list[str] | None, params_file: str, notes: list[str]) -> str:
    yaml, document = _load(path, text, notes)
    stages = document.get("stages") if isinstance(document, dict) else None
    if not isinstance(stages, CommentedMap) or not stages:
        raise CarbonBudgetError(f"cannot edit {path}: expected a mapping of stages under `stages:`")
    gate = stages.get(INIT_GATE_STAGE)
    if gate is not None and not (isinstance(gate, dict) and runs(gate.get("cmd"), GATE)):
        raise CarbonBudgetError(
            f"{path} already has a stage {INIT_GATE_STAGE!r} that does not run `carbon-budget gate`"
        )
    candidates = [name for name in stages if name not in (INIT_GATE_STAGE, layout.STAGES_STAGE)]
    unknown = [name for name in names or [] if name not in candidates]
    if unknown:
        raise CarbonBudgetError(f"{path} has no stage {', '.join(unknown)} (its stages: {', '.join(candidates)})")
    notes += [
        f"stage {name!r} is left unmeasured: the gate fails naming it until it is measured (`carbon-budget init"
        f" --stages {name}`) or exempted by name in budget.exempt"
        for name in candidates
        if names is not None and name not in names and not _record_of(name, stage_commands(stages[name]))
    ]
    for name in names if names is not None else candidates:
        if names is None and _generated(stages[name]):
            notes.append(
                f"stage {name!r} uses {_generated(stages[name])!r}: wrap its cmd in `carbon-budget track --stage"
                f" {name}@${{key}} --` by hand, or exempt its stages in budget.exempt (the gate names each one)"
            )
            continue
        _wrap_stage(stages, name, params_file)
    records = [
        record
        for name in candidates
        if not _generated(stages[name]) and (record := _record_of(name, stage_commands(stages[name])))
    ]
    if records:
        _add_gate(stages, records, params_file)
    return _dump(yaml, document)


def _plan_params(path: Path, text: str, notes: list[str]) -> str:
    yaml, document = _load(path, text, notes)
    if document is None:
        document = CommentedMap()
    if not isinstance(document, CommentedMap):
        raise CarbonBudgetError(f"cannot edit {path}: expected a mapping of sections at the top level")
    for name, snippet in (("budget", BUDGET_SECTION), ("carbon", CARBON_SECTION)):
        defaults = yaml.load(snippet)[name]
        current = document.get(name)
        if current is None:
            document[name] = defaults
            document.yaml_set_comment_before_after_key(name, before=snippet.splitlines()[0].lstrip("# "))
        elif not isinstance(current, CommentedMap):
            raise CarbonBudgetError(f"cannot edit {path}: its `{name}:` section is not a mapping")
        elif name == "budget":
            for key in ("energy_kwh", "co2_kg"):
                if key not in current:
                    current[key] = defaults[key]
        parse_section(document, name, BudgetParams if name == "budget" else CarbonParams, str(path))
    return _dump(yaml, document)


def _plan_gitignore(text: str) -> str:
    """The files publishing writes are ignored by git; lines already there are left alone."""
    present = {line.strip() for line in text.splitlines()}
    missing = [entry for entry in IGNORED if entry not in present]
    if not missing:
        return text
    separator = "" if not text or text.endswith("\n") else "\n"
    return text + separator + "# carbon-budget: local MLflow store, outbox and pictures\n" + "\n".join(missing) + "\n"


def _plan_workflows(root: Path, provider: str, notes: list[str]) -> list[tuple[Path, str, str]]:
    """The CI workflows `--ci` asks for: each written when absent, never over one the team already has."""
    planned = []
    for path, text in workflows(provider):
        before = (root / path).read_text(encoding="utf-8") if (root / path).is_file() else ""
        if before and before != text:
            notes.append(f"{path} exists and differs from the one init writes: left as it is")
            text = before
        planned.append((path, before, text))
    return planned


def plan(root: Path, stages: list[str] | None = None, params_file: str = PARAMS_FILE, ci: str | None = None) -> Plan:
    """Work out every edit without writing anything: the dry run and the real run share it. `ci` names a CI
    provider whose workflows to add (`github`: the pull-request one; `github-nightly`: that and a nightly training
    run started at the grid's cleanest hour)."""
    dvc_path = root / DVC_FILE
    if not dvc_path.is_file():
        raise CarbonBudgetError(f"no {DVC_FILE} in {root}: run `carbon-budget init` at the root of a DVC project")
    if Path(params_file).is_absolute() or ".." in Path(params_file).parts:
        raise CarbonBudgetError(f"--params {params_file}: give a path inside the project, relative to its root")
    notes: list[str] = []
    dvc_text = dvc_path.read_text(encoding="utf-8")
    params_path = root / params_file
    params_text = params_path.read_text(encoding="utf-8") if params_path.is_file() else ""
    ignore_path = root / GITIGNORE
    ignore_text = ignore_path.read_text(encoding="utf-8") if ignore_path.is_file() else ""
    edits = (
        (DVC_FILE, dvc_text, _plan_dvc_yaml(DVC_FILE, dvc_text, stages, params_file, notes)),
        (Path(params_file), params_text, _plan_params(Path(params_file), params_text, notes)),
        (GITIGNORE, ignore_text, _plan_gitignore(ignore_text)),
        *(_plan_workflows(root, ci, notes) if ci else []),
    )
    return Plan([FileChange(path, before, after) for path, before, after in edits if before != after], notes)


def apply(root: Path, plan: Plan) -> None:
    """Write every changed file, each by atomic rename."""
    for change in plan.changes:
        write_text_atomic(root / change.path, change.after)
