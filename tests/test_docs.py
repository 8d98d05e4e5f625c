"""The docs state what is true now: the site builds with every link and anchor checked, and every command, flag,
params key and import the README and docs/ mention exists in the code.

A page that names `carbon-budget gate --fast`, `budget.energy_kw` or `from carbon_budget import Nothing` fails here,
naming the file and the line, instead of sending a newcomer to something that is not there.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from pydantic import BaseModel

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "mkdocs.yml").is_file())
BIN = Path(sys.executable).parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# `carbon-budget <command> <args...>` as ../shared/acceptance/adopt-surface reads it: the command, then every word up
# to a backtick, pipe or shell separator; the flags are the words starting with -- before a ` -- ` (the wrapped command)
COMMAND_LINE = re.compile(r"carbon-budget\s+([a-z][a-z-]*)((?:\s+(?:--?[a-z][a-z0-9-]*|[^\s`|;&]+))*)")
FLAG = re.compile(r"(?<![\w-])--?[a-z][a-z0-9-]*")
# what follows `carbon-budget ` in code without being a command: the tool's own line in the records and the gate
NOT_COMMANDS = {"itself"}
FENCE = re.compile(r"^(```|~~~)(.*)$")
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def lines(page: Path) -> Iterator[tuple[int, str, bool]]:
    """Each line of a page with its number and whether it is code (inside a fence), backslash continuations joined
    so that a command spread over several lines is read whole."""
    in_fence, pending, start = False, "", 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        if in_fence and line.rstrip().endswith("\\"):
            pending, start = pending + line.rstrip()[:-1] + " ", start or number
            continue
        yield (start or number), pending + line, in_fence
        pending, start = "", 0


def fenced_blocks(page: Path, languages: set[str]) -> Iterator[tuple[int, str]]:
    """The fenced code blocks of a page in one of `languages`, with the line each starts on."""
    block: list[str] | None = None
    start, language = 0, ""
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line.strip())
        if fence and block is None:
            block, start, language = [], number + 1, fence.group(2).strip().split(" ")[0]
        elif fence and block is not None:
            if language in languages:
                yield start, "\n".join(block)
            block = None
        elif block is not None:
            block.append(line)


def cli_options() -> dict[str, set[str]]:
    """Every command of `carbon-budget` with the options it takes."""
    from carbon_budget.cli import main

    ctx = click.Context(main)
    options = {}
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None
        options[name] = {
            o for p in command.params for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]
        }
        options[name] |= {"--help", "-h"}
    return options


def test_the_site_builds_strictly_with_the_cli_and_api_generated_from_the_code(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a broken link or anchor, a page outside the nav or a docstring mkdocstrings cannot
    find fails the build. The CLI page lists every command, as mkdocs-click reads them from click."""
    site = tmp_path / "site"
    result = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cli_page = (site / "reference/cli/index.html").read_text(encoding="utf-8")
    for command in cli_options():
        assert f"carbon-budget {command}" in cli_page, f"the CLI reference does not show carbon-budget {command}"
    api_page = (site / "reference/api/index.html").read_text(encoding="utf-8")
    assert "end_epoch" in api_page, "the API reference does not show TrainingBudget.end_epoch"


def test_every_documented_command_and_flag_exists() -> None:
    """Every `carbon-budget <command> --flag` in the README and docs/ is a command that takes that flag. In code, a
    word after `carbon-budget` must be a command too (prose may say "carbon-budget is not on an index")."""
    options = cli_options()
    problems = []
    for page in PAGES:
        for number, line, in_fence in lines(page):
            code = [line] if in_fence else INLINE_CODE.findall(line)
            for text, is_code in [*((c, True) for c in code), (line, False)]:
                for match in COMMAND_LINE.finditer(text):
                    command, rest = match.group(1), match.group(2)
                    where = f"{page.relative_to(ROOT)}:{number}"
                    if command not in options:
                        if is_code and command not in NOT_COMMANDS:
                            problems.append(f"{where}: carbon-budget {command} is not a command")
                        continue
                    for flag in FLAG.findall(rest.split(" -- ")[0]):
                        if flag not in options[command]:
                            problems.append(f"{where}: carbon-budget {command} {flag} is not an option of {command}")
    assert not problems, "\n".join(sorted(set(problems)))


def params_models() -> dict[str, type[BaseModel]]:
    """Each top-level params section a page may name, with its model: the plugin's and the reference pipeline's."""
    from pipeline.config import Params

    return {name: sub for name, field in Params.model_fields.items() if (sub := submodel(field.annotation))}


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X`, `X | None` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (found := submodel(arg)) is not None:
            return found
    return None


def free_keys(annotation: Any) -> bool:
    """Whether a field is a mapping of names the team chooses (`budget.stages`, `budget.exempt`, students)."""
    return getattr(annotation, "__origin__", None) is dict or any(
        free_keys(a) for a in getattr(annotation, "__args__", ())
    )


def key_exists(model: type[BaseModel], parts: list[str]) -> bool:
    """Whether the dotted key `parts` names a field of `model`: `*` stands for any field, and under a mapping of
    names the team chooses any name (or a placeholder such as `<stage>`) is one."""
    if not parts or parts[0] == "*":
        return True
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    rest = parts[1:]
    if not rest:
        return True
    inner = submodel(field.annotation)
    if free_keys(field.annotation):
        return len(rest) == 1 if inner is None else key_exists(inner, rest[1:])
    return inner is not None and key_exists(inner, rest)


# files (`train.py`, `data.csv`, `model.pt`) share their first word with a section: not keys
FILE_SUFFIXES = {"py", "pt", "json", "yaml", "yml", "csv", "npz", "md", "db", "svg", "onnx", "lock", "txt", "sh", "bin"}
# dotted names that are not params keys: figures the gate writes under `sci.` (metrics/gate.json, MLflow), MLflow's
# own modules and a host name, and the unknown keys the docs show on purpose (the bad-input table, a colliding section)
NOT_PARAMS = ("sci.training", "sci.inference", "mlflow.pyfunc", "mlflow.pytorch", "mlflow.onnx", "mlflow.example")
WRONG_ON_PURPOSE = {"train.epoch", "report.out_dir"}


def dotted_keys(text: str, sections: set[str]) -> Iterator[str]:
    """The dotted params keys in `text`: a section's name, then dotted parts; not a file (`train.py`), not a call
    (`budget.end_epoch(epoch)`)."""
    names = "|".join(sorted(sections))
    for match in re.finditer(rf"(?<![\w./@$-])((?:{names})(?:\.(?:[A-Za-z_*][\w*-]*|<[^>]+>|\$\{{[^}}]+\}}))+)", text):
        key = match.group(1)
        called = text[match.end() : match.end() + 1] == "("
        if called or key.rsplit(".", 1)[-1] in FILE_SUFFIXES or key.startswith(NOT_PARAMS) or key in WRONG_ON_PURPOSE:
            continue
        yield key


def yaml_keys(data: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from [f"{prefix}{key}", *yaml_keys(value, f"{prefix}{key}.")]


def test_every_documented_params_key_exists() -> None:
    """Every dotted params key in code (`budget.stages.<stage>.energy_kwh`, `-S train.epochs=3`) and every key of a
    YAML block made of params sections is a field of the params models (carbon_budget/config.py and
    pipeline/config.py)."""
    models = params_models()
    problems = []
    for page in PAGES:
        for number, line, in_fence in lines(page):
            for text in [line] if in_fence else INLINE_CODE.findall(line):
                for key in dotted_keys(text, set(models)):
                    section, *parts = key.split(".")
                    if not key_exists(models[section], parts):
                        problems.append(f"{page.relative_to(ROOT)}:{number}: {key} is not a params key")
        for start, block in fenced_blocks(page, {"yaml"}):
            try:
                data = yaml.safe_load(block)
            except yaml.YAMLError:
                continue
            if not isinstance(data, dict) or not set(data) <= set(models):
                continue  # a dvc.yaml, a workflow: not params
            for key in yaml_keys(data):
                section, *parts = key.split(".")
                if not key_exists(models[section], parts):
                    problems.append(f"{page.relative_to(ROOT)}:{start}: {key} is not a params key")
    assert not problems, "\n".join(problems)


IMPORT = re.compile(r"^\s*(from\s+carbon_budget[\w.]*\s+import\s+[\w, ()]+|import\s+carbon_budget[\w.]*)", re.M)


def test_every_documented_import_imports() -> None:
    """Every `from carbon_budget... import X` in the README's and the docs' Python blocks imports, in a fresh
    interpreter as a reader's script would run it."""
    statements: dict[str, str] = {}
    for page in PAGES:
        for start, block in fenced_blocks(page, {"python", "py"}):
            for match in IMPORT.finditer(block):
                statement = re.sub(r"\s+", " ", match.group(1).replace("(", "").replace(")", "")).strip().rstrip(",")
                statements.setdefault(statement, f"{page.relative_to(ROOT)}:{start}")
    assert statements, "no page shows an import of carbon_budget"
    script = "\n".join(
        f"try:\n    {statement}\nexcept Exception as exc:\n    print({where!r}, {statement!r}, repr(exc))"
        for statement, where in statements.items()
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not result.stdout.strip(), result.stdout


def test_the_readme_gives_a_newcomer_two_commands() -> None:
    """`make run` and `make test`, in a code block of the README, as the Makefile names its targets."""
    blocks = "\n".join(block for _, block in fenced_blocks(ROOT / "README.md", {"bash", "sh", "console"}))
    assert re.search(r"^make run\b", blocks, re.M) and re.search(r"^make test\b", blocks, re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_points_at_a_file_the_repository_lacks(page: Path) -> None:
    """A repository path in code (`benchmarks/noise.py`, `carbon_budget/gate/accounting.py`) exists: a page never
    sends a reader to a file that was moved or never committed."""
    missing = []
    for number, line, in_fence in lines(page):
        for text in [line] if in_fence else INLINE_CODE.findall(line):
            for path in re.findall(
                r"(?<![\w./-])((?:carbon_budget|pipeline|stages|benchmarks|tests|docs|\.github|\.ci)/[\w./-]*\w)", text
            ):
                if not (ROOT / path).exists():
                    missing.append(f"{page.relative_to(ROOT)}:{number}: {path}")
    assert not missing, "\n".join(missing)
