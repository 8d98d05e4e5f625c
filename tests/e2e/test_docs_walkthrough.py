"""The docs, followed literally by a reader with a DVC project of their own: the commands of get-started.md, the
plain-PyTorch loop of how-to/pytorch.md and the CI set-up of how-to/ci.md run as the pages print them, and what the
pages say happens is what happens. A page whose snippet stops working, or whose shown output drifts from what the
tools print, fails here."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run

pytestmark = pytest.mark.integration

DOCS = ROOT / "docs"
# a figure as the pages print one: 1, 0.828, 6.341e-07, -2.92e-06, 127.0.0.1 (never the 2 of `CO2`)
NUMBER = r"(?<![A-Za-z])[-+]?\d[\d.]*(?:e[-+]?\d+)?"
# what a run prints on a machine with a power sensor where the page's host had none
HOW = r"(?:estimated|measured)"


def blocks(page: str, language: str) -> list[str]:
    """The fenced code blocks of one language ("" for the plain ones that show output) of a docs page, in order."""
    return [
        body
        for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", (DOCS / page).read_text(), re.S | re.M)
        if lang == language
    ]


def commands(block: str) -> list[list[str]]:
    """The commands of a shell block as a reader types them: one per line, `&&` chains split, comments dropped."""
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    out: list[list[str]] = []
    for words in filter(None, lines):
        while "&&" in words:
            cut = words.index("&&")
            out.append(words[:cut])
            words = words[cut + 1 :]
        out.append(words)
    return out


def block_with(page: str, language: str, text: str) -> str:
    (block,) = [b for b in blocks(page, language) if text in b]
    return block


def shown_lines_hold(shown: str, printed: str) -> None:
    """Every line the page shows is printed, figures and column padding aside (a run's figures are its own)."""
    spaced = re.sub(r"[ \t]+", " ", printed)
    for line in shown.splitlines():
        line = re.sub(r"\s+", " ", line).strip()
        if not line or line == "..." or line[0] in "┏┡└":  # elisions and table borders, whose widths follow figures
            continue
        parts = re.split(f"({NUMBER}|estimated)", line)  # odd parts: what a run prints its own way
        pattern = "".join(
            re.escape(part) if i % 2 == 0 else HOW if part == "estimated" else NUMBER for i, part in enumerate(parts)
        )
        assert re.search(pattern, spaced), f"the page shows {line!r}; the run printed:\n{printed}"


def team_project(root: Path, env: dict[str, str], train_py: str = "open('model.bin', 'w').write('m')\n") -> Path:
    """A reader's own DVC project as get-started.md pictures it: one stage, `train` (`python train.py`), committed."""
    root.mkdir()
    (root / "train.py").write_text(train_py)
    (root / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python train.py\n    deps: [train.py]\n    outs: [model.bin]\n"
    )
    (root / "params.yaml").write_text("train:\n  epochs: 3\n")
    run(["git", "init", "-q"], root, env)
    run(["dvc", "init", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "our project"], root, env)
    return root


def test_get_started_adds_the_budget_the_gate_passes_then_fails_and_the_commit_is_complete(
    tmp_path: Path, tool_env: dict[str, str]
) -> None:
    page = "get-started.md"
    project = team_project(tmp_path / "team", tool_env)

    dry_run, init = commands(block_with(page, "bash", "carbon-budget init --dry-run"))
    assert dry_run == ["carbon-budget", "init", "--dry-run"] and init == ["carbon-budget", "init"]
    shown_diff = block_with(page, "diff", "carbon-budget track --stage train")
    printed = run(dry_run, project, tool_env).stdout
    changes = [line for line in shown_diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    for line in changes:
        assert line in printed.splitlines(), f"the page's diff shows {line!r}; --dry-run printed:\n{printed}"
    assert run(["git", "status", "--porcelain"], project, tool_env).stdout == ""  # --dry-run changed nothing
    printed = run(init, project, tool_env).stdout
    assert shown_diff.rstrip().splitlines()[-1] in printed  # "wrote dvc.yaml, params.yaml, .gitignore; now run ..."
    assert "nothing to change" in run(init, project, tool_env).stdout  # a second run, as the page says

    (repro,) = commands(block_with(page, "bash", "dvc repro"))
    passed = run(repro, project, tool_env)
    shown_pass, shown_fail = [b for b in blocks(page, "") if "gate: " in b]
    shown_lines_hold(shown_pass, passed.stdout)

    # "lower budget.energy_kwh ... Over budget, the gate fails the pipeline and names the budget"
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["budget"]["energy_kwh"] = 1e-07
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    failed = run(repro, project, tool_env, check=False)
    assert failed.returncode != 0
    shown_lines_hold(shown_fail, failed.stdout + failed.stderr)
    (project / "params.yaml").write_text(yaml.safe_dump({**params, "budget": {**params["budget"], "energy_kwh": 1.0}}))
    run(repro, project, tool_env)

    for command in commands(block_with(page, "bash", "git add")):
        run(command, project, tool_env)
    # what the page says to commit is all there is: everything else the run left is ignored
    assert run(["git", "status", "--porcelain"], project, tool_env).stdout == ""
    committed = run(["git", "ls-files"], project, tool_env).stdout.split()
    assert {"metrics/emissions/train.json", "metrics/stages.json", "dvc.lock"} <= set(committed)


def test_the_plain_pytorch_loop_runs_as_a_wrapped_stage_and_leaves_its_forecast_on_the_record(
    tmp_path: Path, tool_env: dict[str, str]
) -> None:
    (loop,) = blocks("how-to/pytorch.md", "python")
    project = team_project(tmp_path / "team", tool_env, train_py=loop)
    dvc = yaml.safe_load((project / "dvc.yaml").read_text())
    dvc["stages"]["train"]["outs"] = ["model.pt"]  # the page's loop saves model.pt
    (project / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    run(["carbon-budget", "init"], project, tool_env)
    # "Run it as a DVC stage that `carbon-budget init` wrapped (`carbon-budget track --stage train -- python train.py`)"
    wrapped = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["train"]["cmd"]
    assert wrapped == "carbon-budget track --stage train -- python train.py"
    run(["dvc", "repro"], project, tool_env)

    record = json.loads((project / "metrics/emissions/train.json").read_text())
    assert record["status"] == "completed" and record["energy_kwh"] > 0
    # one meter: the wrapper's record carries the loop's forecast and how far it got
    assert record["extra_metrics"]["forecast_energy_kwh"] > 0, record["extra_metrics"]
    assert record["extra_metrics"]["epochs_run"] == 20
    assert (project / "model.pt").is_file()


def test_ci_page_init_writes_the_workflow_it_describes_and_again_changes_nothing(
    tmp_path: Path, tool_env: dict[str, str]
) -> None:
    page = "how-to/ci.md"
    project = team_project(tmp_path / "team", tool_env)
    steps = commands(block_with(page, "bash", "--ci github"))
    assert steps[0] == ["carbon-budget", "init", "--ci", "github"]
    for command in steps:
        run(command, project, tool_env)
    workflow_file = project / ".github/workflows/carbon-budget.yml"
    assert run(["git", "ls-files", ".github"], project, tool_env).stdout.split() == [
        ".github/workflows/carbon-budget.yml"
    ]

    workflow = yaml.safe_load(workflow_file.read_text())
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as True
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}  # least privilege, for the comment
    steps_run = [step.get("run", "") for step in job["steps"]]
    script = "\n".join(steps_run)
    # in the page's order: checks out the history, installs (requirements.txt, else the project, and the plugin from
    # CARBON_BUDGET_PIP_SPEC), dvc pull when a remote is configured, dvc repro, the report, one comment, then fails
    checkout = job["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["fetch-depth"] == 0
    order = ["requirements.txt", "CARBON_BUDGET_PIP_SPEC", "dvc remote list", "dvc pull", "dvc repro"]
    order += ['carbon-budget report --base "origin/', "--pull-request"]
    positions = [script.find(word) for word in order]
    assert -1 not in positions and positions == sorted(positions), dict(zip(order, positions, strict=True))
    comment = job["steps"][-2]["with"]["script"]
    assert "updateComment" in comment and "<!-- carbon-budget-report -->" in comment  # one comment, updated
    repro = next(step for step in job["steps"] if step.get("run") == "dvc repro")
    assert repro["continue-on-error"] is True
    assert job["steps"][-1]["if"] == f"steps.{repro['id']}.outcome == 'failure'" and "exit 1" in steps_run[-1]

    # "run again, it changes nothing"
    names = ["dvc.yaml", "params.yaml", ".gitignore", ".github/workflows/carbon-budget.yml"]
    before = {name: (project / name).read_bytes() for name in names}
    run(["carbon-budget", "init", "--ci", "github"], project, tool_env)
    assert {name: (project / name).read_bytes() for name in names} == before
