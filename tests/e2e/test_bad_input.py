"""Bad input, end to end: one test per row of the bad-input table (docs/reliability.md).

Each row breaks one input in a copy of a project that has already run once, runs the program that meets it (the
stage `dvc repro` would run, or `carbon-budget gate`), and expects a non-zero exit, one message naming the
culprit, no traceback, and nothing overwritten: every file the earlier run generated is byte-identical
afterwards, except the failing stage's own emission record, which says `failed` (the energy it spent is kept,
and the gate cannot pass on the old one). A second test runs two rows through `dvc repro` itself: DVC deletes the
failing stage's outputs before running it, leaves dvc.lock as it was, and everything comes back byte-identical
from git and the DVC cache.
"""

from __future__ import annotations

import ast
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from carbon_budget.layout import record_path
from carbon_budget.records.record import file_md5
from pipeline import layout
from tests.conftest import ROOT, copy_project, declared, edit_params, run, tool_environment

GENERATED = ("data", "models", "metrics", "plots", "dvc.lock")
# These tests are about files: no worker, and MLflow refused at once (the gate warns and keeps its snapshot).
QUIET = {
    "CARBON_BUDGET_WORKER": "off",
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
}
DVC_REPRO = ["dvc", "repro"]
GATE = ["carbon-budget", "gate"]
AS_DVC_RUNS_IT: list[str] = []  # the failing stage's own module, the command `dvc repro` would run


@dataclass(frozen=True)
class Case:
    """One row: how to break the input, the command that meets it, and the words its message must contain."""

    breaks: Callable[[Path], object]
    command: list[str]
    culprit: tuple[str, ...]
    stage: str | None = None  # the stage that fails, if one runs
    bad_file: str | None = None  # a generated file the row breaks on purpose: not compared afterwards

    def argv(self) -> list[str]:
        return self.command or ["python", "-m", f"stages.{self.stage}"]


def params(**sections: dict[str, object]) -> Callable[[Path], None]:
    return lambda repo: edit_params(repo, **sections)


def csv_data(text: str) -> Callable[[Path], None]:
    def breaks(repo: Path) -> None:
        edit_params(repo, data={"source": "csv", "path": "data.csv"})
        (repo / "data.csv").write_text(text)

    return breaks


def outside_the_project(repo: Path) -> None:
    (repo.parent / "outside.csv").write_text("x,label\n1,a\n2,b\n")
    edit_params(repo, data={"source": "csv", "path": "../outside.csv"})


def write(path: str, content: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def breaks(repo: Path) -> None:
        target = repo / path
        target.write_bytes(content(target.read_bytes()))

    return breaks


def record_field(**fields: object) -> Callable[[Path], None]:
    def breaks(repo: Path) -> None:
        path = repo / TRAIN_RECORD
        path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))

    return breaks


TRAIN_RECORD = record_path("train").as_posix()
MODEL = layout.MODEL.as_posix()
ROWS = [
    pytest.param(
        Case(params(train={"epoch": 3}), AS_DVC_RUNS_IT, ("unknown key train.epoch", "epochs, batch_size"), "train"),
        id="params-unknown-key",
    ),
    pytest.param(
        Case(params(train={"epochs": "twenty"}), AS_DVC_RUNS_IT, ("train.epochs = 'twenty'", "valid integer"), "train"),
        id="params-wrong-type",
    ),
    pytest.param(
        Case(
            params(budget={"energy_kwh": -0.0005}),
            AS_DVC_RUNS_IT,
            ("budget.energy_kwh = -0.0005", "greater than 0"),
            "gate",
        ),
        id="params-negative-budget",
    ),
    pytest.param(
        Case(params(budget={"co2_kg": math.nan}), AS_DVC_RUNS_IT, ("budget.co2_kg = NaN", "finite number"), "gate"),
        id="params-nan",
    ),
    pytest.param(
        Case(
            params(forecast={"on_overrun": "sometimes"}),
            AS_DVC_RUNS_IT,
            ("forecast.on_overrun = 'sometimes'", "'abort' or 'warn'"),
            "gate",
        ),
        id="params-forecast-no-stage-retrains-for",
    ),
    pytest.param(
        Case(
            params(carbon={"country_iso_code": "XXX"}),
            AS_DVC_RUNS_IT,
            ("carbon.country_iso_code = 'XXX'", "ISO 3166-1 alpha-3"),
            "preprocess",
        ),
        id="params-unknown-country",
    ),
    pytest.param(
        Case(
            params(export={"formats": ["torchscript", "tflite"]}),
            AS_DVC_RUNS_IT,
            ("export.formats.1 = 'tflite'", "'torchscript', 'onnx' or 'onnx_int8'"),
            "export",
        ),
        id="params-unknown-export-format",
    ),
    pytest.param(
        Case(outside_the_project, AS_DVC_RUNS_IT, ("data.path '../outside.csv'", "outside the project"), "preprocess"),
        id="params-path-outside-the-project",
    ),
    pytest.param(
        Case(csv_data(""), AS_DVC_RUNS_IT, ("data.csv is empty", "header row"), "preprocess"),
        id="data-empty-csv",
    ),
    pytest.param(
        Case(
            csv_data("x,y\n1,2\n3,4\n"),
            AS_DVC_RUNS_IT,
            ("data.csv has no label column 'label'", "data.label_column", "columns are: x, y"),
            "preprocess",
        ),
        id="data-missing-label-column",
    ),
    pytest.param(
        Case(
            csv_data("x,y,label\n1,2,a\n3,four,b\n"),
            AS_DVC_RUNS_IT,
            ("data.csv:3", "feature 'y' is not numeric ('four')", "must hold numbers"),
            "preprocess",
        ),
        id="data-non-numeric-feature",
    ),
    pytest.param(
        Case(
            csv_data("x,label\n1,a\n2,a\n3,a\n"),
            AS_DVC_RUNS_IT,
            ("data.csv", "column 'label'", "single class ('a'", "at least two"),
            "preprocess",
        ),
        id="data-single-class",
    ),
    pytest.param(
        Case(
            csv_data("x,y,label\n1,2,a\n3,nan,b\n5,6,b\n"),
            AS_DVC_RUNS_IT,
            ("data.csv:3", "feature 'y' is NaN", "finite"),
            "preprocess",
        ),
        id="data-nan-feature",
    ),
    pytest.param(
        Case(
            write(MODEL, lambda good: good[: len(good) // 2]),
            AS_DVC_RUNS_IT,
            (MODEL, "cannot be loaded", "truncated", f"dvc checkout --force {MODEL}"),
            "evaluate",
            MODEL,
        ),
        id="model-truncated-evaluate",
    ),
    pytest.param(
        Case(
            write(MODEL, lambda _: b"not a model at all"),
            AS_DVC_RUNS_IT,
            (MODEL, "cannot be loaded", "dvc repro train"),
            "export",
            MODEL,
        ),
        id="model-garbage-export",
    ),
    pytest.param(
        Case(
            write(TRAIN_RECORD, lambda good: good[: len(good) // 2]),
            GATE,
            ("train.json: emission record is unreadable or truncated",),
            bad_file=TRAIN_RECORD,
        ),
        id="record-truncated",
    ),
    pytest.param(
        Case(
            record_field(status="done"),
            GATE,
            ("train.json: emission record is invalid at status", "'completed', 'failed', 'aborted' or 'running'"),
            bad_file=TRAIN_RECORD,
        ),
        id="record-schema-invalid",
    ),
    pytest.param(
        Case(
            record_field(energy_kwh=-1.0),
            GATE,
            ("train.json: emission record is invalid at energy_kwh", "greater than or equal to 0"),
            bad_file=TRAIN_RECORD,
        ),
        id="record-negative-energy",
    ),
    pytest.param(
        Case(
            record_field(energy_kwh=math.nan),
            GATE,
            ("train.json: emission record is invalid at energy_kwh", "finite number"),
            bad_file=TRAIN_RECORD,
        ),
        id="record-nan-energy",
    ),
    pytest.param(
        Case(
            lambda repo: shutil.copy(repo / "metrics/emissions/preprocess.json", repo / TRAIN_RECORD),
            GATE,
            ("train.json: holds the record of stage 'preprocess', not of 'train'",),
            bad_file=TRAIN_RECORD,
        ),
        id="record-of-another-stage",
    ),
    pytest.param(
        Case(
            write("stages/train.py", lambda code: code + b"\n# changed after the model was built\n"),
            GATE,
            ("train.json: stale record", "stages/train.py has changed since it ran", "dvc repro train"),
        ),
        id="record-from-older-code",
    ),
    pytest.param(
        Case(
            lambda repo: (repo / MODEL).unlink(),
            GATE,
            ("train.json: stale record", f"{MODEL} is missing"),
            bad_file=MODEL,
        ),
        id="model-missing-gate",
    ),
    pytest.param(
        Case(
            lambda repo: (repo / "dvc.lock").unlink(),
            GATE,
            ("dvc.lock is missing", "run `dvc repro`"),
            bad_file="dvc.lock",
        ),
        id="dvc-lock-missing",
    ),
]


def snapshot(repo: Path) -> dict[str, str]:
    """md5 of every generated file: data, models, metrics, plots and dvc.lock."""
    files: dict[str, str] = {}
    for top in GENERATED:
        base = repo / top
        for path in [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()):
            files[path.relative_to(repo).as_posix()] = file_md5(path)
    return files


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, dict[str, str]]:
    """One successful `dvc repro` for the whole module, committed as main keeps it (metrics, plots, dvc.lock in
    git), with the md5 of everything it generated; each test works on a copy."""
    scratch = tmp_path_factory.mktemp("bad-input-built")
    env = {**tool_environment(scratch, cache_dir), **QUIET}
    repo = copy_project(scratch / "project", env)
    run(DVC_REPRO, repo, env)
    run(["git", "add", "-f", *GENERATED[2:]], repo, env)
    run(["git", "commit", "-qm", "outputs of a successful run"], repo, env)
    return repo, snapshot(repo)


def own_message(stderr: str) -> list[str]:
    """What the pipeline said, without DVC's own one-line summary of a failed stage."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("ERROR: failed to reproduce")]


def assert_one_clear_message(result: CompletedProcess[str], case: Case) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    message = own_message(result.stderr)
    items = [line for line in message if line.startswith("  ")]
    assert len(message) - len(items) == 1, f"expected one message, got:\n{result.stderr}"
    # one problem, or several consequences of the one broken file (every stage that read a missing model)
    assert len(items) <= 1 or all(case.bad_file and case.bad_file in item for item in items), result.stderr
    for words in case.culprit:
        assert words in "\n".join(message), f"{words!r} not in:\n{result.stderr}"


def assert_nothing_overwritten(repo: Path, before: dict[str, str], case: Case, deleted: set[str]) -> None:
    """Every generated file as it was, but for the broken input itself, the failing stage's `failed` record, and
    what DVC deleted (`deleted`: the failing stage's declared outputs)."""
    after = snapshot(repo)
    for path, digest in before.items():
        if path == case.bad_file:
            continue
        if path == f"metrics/emissions/{case.stage}.json" and after.get(path) not in (None, digest):
            assert json.loads((repo / path).read_text())["status"] == "failed"
        elif any(path == out or path.startswith(f"{out}/") for out in deleted):
            assert after.get(path, digest) == digest, f"{path} was rewritten"
        else:
            assert after.get(path) == digest, f"{path} was changed or removed"
    assert set(after) <= set(before), f"new files: {set(after) - set(before)}"


def broken_copy(built: tuple[Path, dict[str, str]], tmp_path: Path, case: Case) -> Path:
    repo = tmp_path / "project"
    shutil.copytree(built[0], repo, symlinks=True)
    case.breaks(repo)
    return repo


@pytest.mark.integration
@pytest.mark.parametrize("case", ROWS)
def test_bad_input_gets_one_clear_message_and_overwrites_nothing(
    case: Case, built: tuple[Path, dict[str, str]], tmp_path: Path, tool_env: dict[str, str]
) -> None:
    repo = broken_copy(built, tmp_path, case)
    result = run(case.argv(), repo, {**tool_env, **QUIET}, check=False)
    assert_one_clear_message(result, case)
    assert_nothing_overwritten(repo, built[1], case, deleted=set())


@pytest.mark.integration
@pytest.mark.parametrize(
    "row", ["params-unknown-export-format", "data-single-class", "params-forecast-no-stage-retrains-for"]
)
def test_dvc_repro_stops_at_the_stage_and_what_it_deleted_comes_back(
    row: str, built: tuple[Path, dict[str, str]], tmp_path: Path, tool_env: dict[str, str]
) -> None:
    (case,) = (p.values[0] for p in ROWS if p.id == row)
    assert isinstance(case, Case) and case.stage is not None
    repo = broken_copy(built, tmp_path, case)
    env = {**tool_env, **QUIET}
    result = run(DVC_REPRO, repo, env, check=False)
    assert_one_clear_message(result, case)
    assert f"failed to reproduce '{case.stage}'" in result.stderr  # DVC stopped at the stage that met it
    assert_nothing_overwritten(repo, built[1], case, deleted=declared(case.stage))
    assert file_md5(repo / "dvc.lock") == built[1]["dvc.lock"]

    run(["git", "checkout", "--", "."], repo, env)  # the input put right; metrics and records from git
    run(["dvc", "checkout", "--force"], repo, env)  # splits, model and artifacts from the DVC cache
    assert snapshot(repo) == built[1]


def test_no_file_is_ever_unpickled() -> None:
    """A model or data file may come from anywhere: torch.load only with weights_only=True, np.load only with
    allow_pickle=False, and no pickle module imported at all."""
    for path in sorted(
        [
            *ROOT.glob("carbon_budget/**/*.py"),
            *ROOT.glob("pipeline/*.py"),
            *ROOT.glob("stages/*.py"),
            *ROOT.glob("benchmarks/*.py"),
        ]
    ):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not {"pickle", "cloudpickle", "dill", "joblib"} & set(names), f"{path}:{node.lineno}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                owner = ast.unparse(node.func.value)
                options = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if owner == "torch":
                    assert options.get("weights_only") == "True", f"{path}:{node.lineno}"
                if owner in ("np", "numpy"):
                    assert options.get("allow_pickle") == "False", f"{path}:{node.lineno}"
