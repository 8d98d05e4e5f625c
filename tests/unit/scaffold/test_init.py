"""`carbon-budget init`: a budget added to a DVC project that is not this pipeline, then enforced by `dvc repro`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from carbon_budget.cli import main
from carbon_budget.scaffold.commands import TRACK, runs, tracked_record, wrap
from tests.conftest import ROOT, mlflow_runs, run

DVC_YAML = """\
# a user's pipeline: neither stage is Python ML code
stages:
  sort:  # the shell stage
    cmd: seq 1 20000 | sort -rn > data/sorted.txt
    outs:
      - data/sorted.txt
  count:
    cmd: python count.py ${count.top}
    deps:
      - count.py
      - data/sorted.txt
    params:
      - count.top
    metrics:
      - data/count.json:
          cache: false
"""
PARAMS_YAML = """\
# the user's own params: this comment stays
count:
  top: 3   # how many to keep
"""
COUNT_PY = """\
import json, sys
lines = open("data/sorted.txt").read().split()
json.dump({"lines": len(lines), "top": lines[: int(sys.argv[1])]}, open("data/count.json", "w"))
"""


def write_project(repo: Path, dvc_yaml: str = DVC_YAML, params_yaml: str = PARAMS_YAML) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "dvc.yaml").write_text(dvc_yaml)
    (repo / "params.yaml").write_text(params_yaml)
    (repo / "count.py").write_text(COUNT_PY)


@pytest.fixture
def init_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory to run `carbon-budget init` in, in this process (files only, no DVC run)."""
    write_project(tmp_path / "plain")
    monkeypatch.chdir(tmp_path / "plain")
    return tmp_path / "plain"


def init(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["init", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_budget_added_to_a_foreign_dvc_project_and_enforced(tmp_path: Path, tool_env: dict[str, str]) -> None:
    repo = tmp_path / "foreign"
    write_project(repo)
    (repo / "data").mkdir()
    # this checkout's code inside `dvc repro`; the gate publishes in its own process (no background worker), so
    # the runs are in the store when `dvc repro` returns
    env = {**tool_env, "PYTHONPATH": str(ROOT), "CARBON_BUDGET_WORKER": "off"}
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        run(command, repo, env)
    before = {name: (repo / name).read_bytes() for name in ("dvc.yaml", "params.yaml")}

    dry = run(["carbon-budget", "init", "--dry-run"], repo, env)
    assert "+++ b/dvc.yaml" in dry.stdout and "+  carbon_gate:" in dry.stdout and "+budget:" in dry.stdout
    assert {name: (repo / name).read_bytes() for name in before} == before

    run(["carbon-budget", "init"], repo, env)
    params_text = (repo / "params.yaml").read_text()
    assert params_text.startswith(PARAMS_YAML)  # the user's comments, keys and order, byte for byte
    dvc_text = (repo / "dvc.yaml").read_text()
    assert "# a user's pipeline" in dvc_text and "sort:  # the shell stage" in dvc_text
    stages = yaml.safe_load(dvc_text)["stages"]
    assert list(stages) == ["sort", "count", "carbon_stages", "carbon_gate"]
    assert stages["count"]["cmd"] == "carbon-budget track --stage count -- python count.py ${count.top}"
    assert stages["carbon_gate"] == {
        "cmd": "carbon-budget gate --publish",
        "deps": ["metrics/stages.json", "metrics/emissions/sort.json", "metrics/emissions/count.json"],
        "params": ["budget"],
    }
    assert "/mlflow.db\n" in (repo / ".gitignore").read_text()
    edited = {name: (repo / name).read_bytes() for name in (*before, ".gitignore")}
    again = run(["carbon-budget", "init"], repo, env)
    assert "nothing to change" in again.stdout
    assert {name: (repo / name).read_bytes() for name in edited} == edited

    passed = run(["dvc", "repro"], repo, env)
    assert "gate: PASSED" in passed.stdout and "MLflow: 4 new runs" in passed.stdout
    parents, children, child_metrics = mlflow_runs(repo / "mlflow.db")
    assert len(parents) == 1 and len(children) == 3 and "energy_wh" in child_metrics  # sort, count, the gate
    assert not run(["git", "status", "--porcelain", "--ignored=no"], repo, env).stdout.count("mlflow")
    for stage, output in (("sort", "data/sorted.txt"), ("count", "data/count.json")):
        record = json.loads((repo / f"metrics/emissions/{stage}.json").read_text())
        assert record["status"] == "completed" and record["energy_kwh"] > 0
        assert list(record["outputs"]) == [output]  # what the gate checks for staleness
    assert json.loads((repo / "data/count.json").read_text())["lines"] == 20000
    report = run(["carbon-budget", "report", "--format", "json"], repo, env)
    assert [s["stage"] for s in json.loads(report.stdout)["stages"]] == ["sort", "count"]

    counted = (repo / "data/count.json").read_bytes()
    (repo / "data/count.json").write_text("{}")
    stale = run(["carbon-budget", "gate"], repo, env, check=False)
    assert stale.returncode == 1 and "stale record" in stale.stderr and "data/count.json" in stale.stderr
    (repo / "data/count.json").write_bytes(counted)
    # The records of an init project keep no params: dvc.lock's are compared with today's.
    (repo / "params.yaml").write_text(params_text.replace("top: 3", "top: 5"))
    moved = run(["carbon-budget", "gate"], repo, env, check=False)
    assert moved.returncode == 1 and "count.json: stale record, params.yaml `count.top` differs" in moved.stderr
    (repo / "params.yaml").write_text(params_text)

    (repo / "params.yaml").write_text(params_text.replace("energy_kwh: 1.0 ", "energy_kwh: 1e-12"))
    failed = run(["dvc", "repro"], repo, env, check=False)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "kWh > budget 1e-12 kWh (params.yaml budget.energy_kwh)" in output
    assert "Traceback" not in output


def test_only_the_named_stages_are_measured(init_in: Path) -> None:
    code, output = init("--stages", "count")
    assert code == 0
    stages = yaml.safe_load((init_in / "dvc.yaml").read_text())["stages"]
    assert stages["sort"]["cmd"] == "seq 1 20000 | sort -rn > data/sorted.txt"  # not named: left as it was
    assert stages["carbon_gate"]["deps"] == ["metrics/stages.json", "metrics/emissions/count.json"]
    assert "stage 'sort' is left unmeasured" in output  # the gate will name it: said now, not at the first repro
    # naming another stage later adds it, and the gate then depends on both records
    assert init("--stages", "sort")[0] == 0
    stages = yaml.safe_load((init_in / "dvc.yaml").read_text())["stages"]
    assert stages["carbon_gate"]["deps"] == [
        "metrics/stages.json", "metrics/emissions/count.json", "metrics/emissions/sort.json"
    ]  # fmt: skip


def test_init_run_again_adopts_a_stage_added_since_and_leaves_the_others(init_in: Path) -> None:
    assert init()[0] == 0
    wrapped = yaml.safe_load((init_in / "dvc.yaml").read_text())["stages"]
    text = (init_in / "dvc.yaml").read_text() + "  extra:\n    cmd: python extra.py\n    outs: [extra.txt]\n"
    (init_in / "dvc.yaml").write_text(text)
    code, _ = init()
    stages = yaml.safe_load((init_in / "dvc.yaml").read_text())["stages"]
    assert code == 0 and stages["extra"]["cmd"] == "carbon-budget track --stage extra -- python extra.py"
    assert {k: v for k, v in stages.items() if k not in ("extra", "carbon_gate")} == {
        k: v for k, v in wrapped.items() if k != "carbon_gate"
    }  # the stages it wrapped before, untouched
    assert stages["carbon_gate"]["deps"][-1] == "metrics/emissions/extra.json"
    assert "nothing to change" in init()[1]


def test_list_commands_and_shell_syntax_run_under_the_shell(init_in: Path) -> None:
    list_cmd = DVC_YAML.replace(
        "    cmd: python count.py ${count.top}\n", "    cmd:\n      - mkdir -p out\n      - python count.py 3\n"
    )
    (init_in / "dvc.yaml").write_text(list_cmd)
    assert init()[0] == 0
    count = yaml.safe_load((init_in / "dvc.yaml").read_text())["stages"]["count"]
    assert count["cmd"] == "carbon-budget track --stage count --shell -- 'mkdir -p out && python count.py 3'"
    assert wrap("a", ["python a.py --n $N data/*.csv"], "params.yaml").endswith("-- python a.py --n $N data/*.csv")
    for shell_only in ("cd src && make", "FOO=1 python a.py", "python a.py > out.txt", "source env.sh"):
        assert " --shell -- " in wrap("a", [shell_only], "params.yaml")
    assert (
        runs(wrap("a", ["x"], "p.yaml"), TRACK)
        and tracked_record(wrap("a", ["x"], "p.yaml")) == "metrics/emissions/a.json"
    )


def test_other_params_file_and_an_existing_budget_section(init_in: Path) -> None:
    (init_in / "budget.yaml").write_text("budget:\n  energy_kwh: 0.2  # ours\n")
    assert init("--params", "budget.yaml")[0] == 0
    stages = yaml.safe_load((init_in / "dvc.yaml").read_text())["stages"]
    assert stages["carbon_gate"]["cmd"] == "carbon-budget gate --publish --params budget.yaml"
    assert stages["carbon_gate"]["params"] == [{"budget.yaml": ["budget"]}]
    assert stages["sort"]["cmd"].startswith("carbon-budget track --stage sort --params budget.yaml --")
    text = (init_in / "budget.yaml").read_text()
    assert text.startswith("budget:\n  energy_kwh: 0.2  # ours\n  co2_kg: 0.5")  # only the missing key is added
    assert (init_in / "params.yaml").read_text() == PARAMS_YAML


@pytest.mark.parametrize(
    ("dvc_yaml", "params_yaml", "args", "message"),
    [
        (None, PARAMS_YAML, [], "no dvc.yaml"),
        ("- a\n- b\n", PARAMS_YAML, [], "expected a mapping of stages"),
        ("stages: [\n", PARAMS_YAML, [], "not valid YAML"),
        (DVC_YAML, PARAMS_YAML, ["--stages", "sort,train"], "has no stage train (its stages: sort, count)"),
        (DVC_YAML, "- 1\n", [], "expected a mapping of sections"),
        (DVC_YAML, "budget: 5\n", [], "`budget:` section is not a mapping"),
        (DVC_YAML, "budget:\n  max_usd: 3\n", [], "unknown key budget.max_usd"),
        (DVC_YAML, "carbon:\n  country_iso_code: XXX\n", [], "unknown country code 'XXX'"),
        (
            DVC_YAML + "  many:\n    foreach: [a, b]\n    do:\n      cmd: echo ${item}\n",
            PARAMS_YAML,
            ["--stages", "count,many"],
            "stage 'many' uses 'foreach'",
        ),
        (DVC_YAML.replace("    outs:\n", "    wdir: sub\n    outs:\n", 1), PARAMS_YAML, [], "stage 'sort' uses 'wdir'"),
        (DVC_YAML + "  carbon_gate:\n    cmd: ./my-gate\n", PARAMS_YAML, [], "already has a stage 'carbon_gate'"),
        (DVC_YAML + "  report:\n    cmd: make\n    outs:\n      - metrics\n", PARAMS_YAML, [], "overlap"),
    ],
)
def test_refusals_change_nothing(
    init_in: Path, dvc_yaml: str | None, params_yaml: str, args: list[str], message: str
) -> None:
    if dvc_yaml is None:
        (init_in / "dvc.yaml").unlink()
    else:
        (init_in / "dvc.yaml").write_text(dvc_yaml)
    (init_in / "params.yaml").write_text(params_yaml)
    code, output = init(*args)
    assert code == 1 and message in output and "Traceback" not in output
    assert (init_in / "params.yaml").read_text() == params_yaml
    assert dvc_yaml is None or (init_in / "dvc.yaml").read_text() == dvc_yaml


def test_mixed_indentation_is_said_before_the_diff(init_in: Path) -> None:
    (init_in / "dvc.yaml").write_text(
        DVC_YAML.replace("      - count.py\n      - data/sorted.txt", "    - count.py\n    - data/sorted.txt")
    )
    code, output = init("--dry-run")
    assert code == 0 and "note: dvc.yaml: its indentation is not one layout throughout" in output


def test_generated_stages_may_stay_out_and_a_missing_params_file_is_created(init_in: Path) -> None:
    (init_in / "dvc.yaml").write_text(DVC_YAML + "  many:\n    foreach: [a, b]\n    do:\n      cmd: echo ${item}\n")
    (init_in / "params.yaml").unlink()
    assert init("--stages", "sort,count")[0] == 0
    created = yaml.safe_load((init_in / "params.yaml").read_text())
    assert created["budget"] == {"energy_kwh": 1.0, "co2_kg": 0.5, "stages": {}}
    assert created["carbon"]["country_iso_code"] == "USA"
    assert "foreach" in yaml.safe_load((init_in / "dvc.yaml").read_text())["stages"]["many"]


def test_the_gate_init_adds_counts_its_own_process_in_the_tools_line(tmp_path: Path, tool_env: dict[str, str]) -> None:
    """`carbon-budget gate --publish` decides as the reference pipeline's gate stage does: its own process (start-up,
    judging, handing over) is the tool's work, published as its stage's run and folded into "carbon-budget itself"."""
    import sqlite3

    repo = tmp_path / "foreign"
    write_project(repo)
    (repo / "data").mkdir()
    env = {**tool_env, "PYTHONPATH": str(ROOT), "CARBON_BUDGET_WORKER": "off"}  # published in the gate's process
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["carbon-budget", "init"]):
        run(command, repo, env)
    assert "gate: PASSED" in run(["dvc", "repro"], repo, env).stdout
    itself = json.loads((repo / ".carbon-budget/itself.json").read_text())
    assert itself["tags"]["covers"].startswith("the carbon_gate stage (")
    assert itself["extra_metrics"]["tool_stages_cpu_s"] > 0  # the gate's own CPU-seconds, beside the publishing's
    assert itself["extra_metrics"]["cpu_s"] > itself["extra_metrics"]["tool_stages_cpu_s"]
    with sqlite3.connect(repo / "mlflow.db") as con:
        stages = sorted(r[0] for r in con.execute("select value from tags where key = 'carbon_budget.stage'"))
    assert stages == ["carbon_gate", "count", "sort"]
