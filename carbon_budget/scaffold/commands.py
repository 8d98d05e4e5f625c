"""Command lines as DVC runs them, and as `carbon-budget track` wraps them.

DVC runs a stage's cmd through the user's shell ($SHELL, else /bin/sh), a list item by item and a string line by
line. A wrapped stage must do exactly what it did before: a plain command is passed to `track` as it is (DVC's
shell still expands its variables and globs), and anything only a shell can run goes to that same shell.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from carbon_budget import layout
from carbon_budget.config import PARAMS_FILE

TRACK = ("carbon-budget", "track")
GATE = ("carbon-budget", "gate")
# A stage that needs a shell runs under the one DVC itself uses ($SHELL, else /bin/sh), chosen by `track --shell`:
# `${...}` in dvc.yaml is DVC's own templating, so the command line cannot name the shell as "${SHELL:-/bin/sh}".
SHELL_OPTION = "--shell"
# Commands that only a shell can run: operators, assignments, builtins and keywords.
_OPERATOR = re.compile(r"^[();<>|&]+$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SHELL_WORDS = {"!", ".", "[[", "{", "case", "cd", "eval", "exec", "export", "for", "if", "source", "until", "while"}


def _tokens(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return []


def runs(command: Any, subcommand: tuple[str, str]) -> bool:
    """True for a command line that runs this `carbon-budget` subcommand, e.g. ("carbon-budget", "track")."""
    tokens = _tokens(command) if isinstance(command, str) else []
    return len(tokens) >= 2 and (Path(tokens[0]).name, tokens[1]) == subcommand


def tracked_record(command: str) -> str:
    """The record a `carbon-budget track` command writes (its --output, else metrics/emissions/<stage>.json)."""
    tokens = _tokens(command)
    options: dict[str, str] = {}
    for index, token in enumerate(tokens[2 : tokens.index("--") if "--" in tokens else len(tokens)], start=2):
        name, _, value = token.partition("=")
        if name in ("--stage", "--output"):
            options[name] = value or (tokens[index + 1] if index + 1 < len(tokens) else "")
    if "--output" in options:
        return options["--output"]
    return layout.record_path(options.get("--stage", "")).as_posix()


def _needs_shell(command: str) -> bool:
    if "#" in command or "\\" in command:
        return True
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return True
    return (
        not tokens
        or _ASSIGNMENT.match(tokens[0]) is not None
        or tokens[0] in _SHELL_WORDS
        or any(_OPERATOR.match(t) for t in tokens)
    )


def wrap(stage: str, commands: list[str], params_file: str) -> str:
    """The stage's commands as one `carbon-budget track` command line: a plain command as it is (DVC's shell
    still expands its variables and globs), anything that needs a shell, or several commands, under DVC's shell."""
    track = f"carbon-budget track --stage {shlex.quote(stage)}"
    if params_file != PARAMS_FILE:
        track += f" --params {shlex.quote(params_file)}"
    if len(commands) == 1 and not _needs_shell(commands[0]):
        return f"{track} -- {commands[0]}"
    return f"{track} {SHELL_OPTION} -- {shlex.quote(' && '.join(commands))}"


def command_lines(cmd: Any) -> list[str] | None:
    """DVC runs a list cmd item by item and a string cmd line by line; None when cmd is neither."""
    lines = cmd.splitlines() if isinstance(cmd, str) else cmd
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        return None
    return [line.strip() for line in lines if line.strip()]


def stage_commands(stage: Any) -> list[str]:
    """The commands of any stage, none for one init does not understand (it is only wrapped when named)."""
    return (command_lines(stage.get("cmd")) if isinstance(stage, dict) else None) or []
