"""The command line as a newcomer reads it: every option explained, the commands in the order they are used."""

from __future__ import annotations

import re

import click
from click.testing import CliRunner

from carbon_budget.cli import WORKFLOW, main


def test_every_option_of_every_command_has_help() -> None:
    bare = [
        f"{name} {option.opts[0]}"
        for name, command in main.commands.items()
        for option in command.params
        if isinstance(option, click.Option) and not (option.help or "").strip()
    ]
    assert not bare, bare


def test_top_level_help_lists_commands_in_workflow_order_with_whole_sentences() -> None:
    shown = CliRunner().invoke(main, ["--help"], terminal_width=200).output
    listed = re.findall(r"^  ([a-z]+)\s{2,}(.+)$", shown.split("Commands:", 1)[1], re.M)
    assert [name for name, _ in listed] == list(WORKFLOW) == [n for n in WORKFLOW if n in main.commands]
    for name, summary in listed:
        # click cuts a long first sentence with "..."; a summary is one whole sentence
        assert summary.endswith(".") and not summary.endswith("...") and summary.count(". ") == 0, (name, summary)
