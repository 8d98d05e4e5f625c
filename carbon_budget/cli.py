"""`carbon-budget`: the command line. The only place besides the stage scripts that turns errors into exit codes.

Commands import what they need when they run, so `--help` and `gate` never pay for torch, MLflow or codecarbon.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from carbon_budget.errors import CarbonBudgetError
from carbon_budget.scaffold.ci import CI_PROVIDERS

# This process loads no pydantic plugins; looking for them scans every installed package's entry points (~40 ms).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def _params_option(help_text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`--params`, as every command that reads the params file takes it."""
    return click.option(
        "--params",
        "params_file",
        default="params.yaml",  # config.PARAMS_FILE, not imported: pydantic would load before the setting below
        show_default=True,
        type=click.Path(path_type=Path),
        help=help_text,
    )


def _fail(exc: CarbonBudgetError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


# the order a team meets the commands in: set up, measure, judge, explain, publish, then carbon-aware timing
WORKFLOW = ("init", "track", "stages", "gate", "report", "sync", "window", "wait")


class _InWorkflowOrder(click.Group):
    """`carbon-budget --help` lists the commands in the order they are used (click sorts them by name)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in WORKFLOW if name in self.commands] + sorted(set(self.commands) - set(WORKFLOW))


@click.group(cls=_InWorkflowOrder, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="carbon-budget")
def main() -> None:
    """Energy and carbon budgets for a DVC + MLflow training pipeline."""


@main.command(short_help="Judge the records against the budgets; fail when over budget.")
@_params_option("The params file whose `budget:` section the records are judged against.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON instead of a table.")
@click.option(
    "--publish",
    is_flag=True,
    help="Then log the execution to MLflow: a parent run, a child per stage (the gate stage `init` adds does this).",
)
def gate(params_file: Path, as_json: bool, publish: bool) -> None:
    """Check every stage's emission record against the budgets; exit 1 when over budget or when evidence is missing.

    Reads files only: without --publish it changes nothing, and needs neither MLflow nor a rerun.
    """
    from carbon_budget.config import gate_params, read_params_file
    from carbon_budget.publish.verdict import Decision, Publishing, decide

    def show(decision: Decision) -> None:
        if as_json:
            click.echo(json.dumps(decision.document, indent=2, sort_keys=True))
        else:
            click.echo(decision.table, nl=False)

    try:
        raw = read_params_file(params_file)
        # the parent run logs the sections the tool reads; a team's own params are DVC's to track
        publishing = Publishing({name: raw[name] for name in ("budget", "carbon") if name in raw}) if publish else None
        decision = decide(gate_params(raw, str(params_file)), raw, Path.cwd(), str(params_file), show, publishing)
    except CarbonBudgetError as exc:
        _fail(exc)
        return
    if decision.published:
        click.echo(decision.published)
    if decision.unpublished:  # MLflow away: the snapshot waits for `carbon-budget sync`
        click.echo(f"warning: {decision.unpublished}", err=True)
    if not decision.verdict.passed:
        click.echo(decision.verdict.summary(), err=True)
        sys.exit(1)


@main.command(short_help="List every DVC stage and what the gate owes it.")
@_params_option("The params file whose `budget.exempt` names the stages exempt from measurement.")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the stage names here as JSON and print a one-line summary (the `carbon_stages` stage does: the gate"
    " depends on the file).",
)
def stages(params_file: Path, output: Path | None) -> None:
    """List every stage DVC makes of dvc.yaml (`foreach`, `matrix` and `vars` expanded) and what the gate owes
    each: its emission record, an exemption by name, or a failure naming it."""
    from carbon_budget.config import read_params_file
    from carbon_budget.files import write_json
    from carbon_budget.gate.accounting import account
    from carbon_budget.layout import record_path

    root = Path.cwd()
    try:
        budget = read_params_file(params_file, missing_ok=True).get("budget")
        exempt = budget.get("exempt") if isinstance(budget, dict) else None  # validated by the gate, not here
        accounting = account(root, {str(k): str(v) for k, v in exempt.items()} if isinstance(exempt, dict) else {})
    except CarbonBudgetError as exc:
        _fail(exc)
        return
    names = accounting.stages
    if output is not None:  # under `dvc repro`, on every run: one line, and the stages the gate will refuse
        write_json(output, {"stages": names})
        click.echo(
            f"{len(names)} stages: {len(accounting.recorded)} measured, {len(accounting.exempt)} exempt"
            + "".join(f"; {name} is measured by nothing" for name in accounting.unmeasured)
        )
        return
    for name in names:
        if name in accounting.recorded:
            owed = f"measured: {record_path(name).as_posix()}"
        elif name in accounting.exempt:
            owed = f"exempt: {accounting.exempt[name]}"
        elif name in accounting.unmeasured:
            owed = "MEASURED BY NOTHING: the gate fails until `carbon-budget init` wraps it or budget.exempt names it"
        else:
            owed = "the tool's own stage"
        click.echo(f"{name}: {owed}")


@main.command(short_help="Publish the executions MLflow has not taken yet.")
@click.option(
    "--tracking-uri", default=None, help="MLflow to deliver to (default: MLFLOW_TRACKING_URI, else ./mlflow.db)."
)
def sync(tracking_uri: str | None) -> None:
    """Publish executions that MLflow has not taken yet (kept in .carbon-budget/outbox/). Safe to repeat."""
    from carbon_budget.publish.delivery import deliver
    from carbon_budget.publish.outbox import pending

    folders = pending(Path.cwd())
    if not folders:
        click.echo("nothing to sync: every execution is in MLflow")
        return
    failed = 0
    for folder in folders:
        try:
            published = deliver(folder, tracking_uri)
            click.echo(f"synced {published.execution_id[:8]}: {published.new_runs} new runs ({published.ui_url})")
        except CarbonBudgetError as exc:
            failed += 1
            click.echo(f"error: {exc}", err=True)
    if failed:
        click.echo(f"{failed} of {len(folders)} executions still pending", err=True)
        sys.exit(1)


@main.command(short_help="Compare this revision's cost with a base and its budgets.")
@click.option("--base", "base_ref", default=None, help="Git ref to compare with (e.g. origin/main).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "json"]),
    default="markdown",
    show_default=True,
    help="What is printed and written to --output: the pull-request comment, or the same report as JSON.",
)
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Write the report here too.")
@_params_option("The params file whose budgets judge each side, read at the same path in the base's tree.")
@click.option(
    "--remeasure",
    "runs",
    type=click.IntRange(min=0),
    default=None,
    help="Rerun base and head side by side N times each, alternated, and compare medians (default: report.remeasure).",
)
@click.option(
    "--pull-request",
    "in_pull_request",
    is_flag=True,
    help="As the pull-request workflow runs it: remeasure report.pull_request_remeasure times (0: MLflow history).",
)
@click.option(
    "--json-output", type=click.Path(path_type=Path), default=None, help="Write the JSON report here as well."
)
def report(
    base_ref: str | None,
    fmt: str,
    output: Path | None,
    params_file: Path,
    runs: int | None,
    in_pull_request: bool,
    json_output: Path | None,
) -> None:
    """What this revision costs (energy, CO2, model size, accuracy), against BASE and against its budgets.

    Exits 0 even when over budget: the gate decides; the report explains. Exits 1 when a remeasured run fails:
    no committed figure passes for a measurement. With GITHUB_STEP_SUMMARY set, the markdown is appended to the
    job summary.
    """
    from carbon_budget.report.run import ReportRequest
    from carbon_budget.report.run import report as run_report

    request = ReportRequest(params_file, base_ref, runs, in_pull_request, fmt, output, json_output)
    try:
        text = run_report(Path.cwd(), request)
    except CarbonBudgetError as exc:
        _fail(exc)
        return
    click.echo(text, nl=False)


@main.command(short_help="Add measurement, a gate stage and budgets to this DVC project.")
@click.option("--stages", "stage_names", default=None, help="Comma-separated stages to measure (default: every stage).")
@click.option(
    "--params",
    "params_file",
    default="params.yaml",
    show_default=True,
    help="The params file that gets the `budget:` and `carbon:` sections, relative to the project root.",
)
@click.option("--dry-run", is_flag=True, help="Print the diff and change nothing.")
@click.option(
    "--ci",
    type=click.Choice(CI_PROVIDERS),
    default=None,
    help="Also write CI workflows: github, a pull-request workflow (.github/workflows/carbon-budget.yml) that runs"
    " the pipeline with its gate and posts the report as one comment; github-nightly, that and a nightly training"
    " run started at the grid's cleanest hour (carbon-budget-nightly.yml).",
)
def init(stage_names: str | None, params_file: str, dry_run: bool, ci: str | None) -> None:
    """Add a carbon budget to the DVC project in this directory: measure its stages with `carbon-budget track`,
    add a `carbon_gate` stage that fails `dvc repro` when over budget, and add budget defaults to the params file.

    Keeps the files' comments and order, prints a diff of what it changes, and changes nothing a second time.
    """
    from carbon_budget.scaffold import init as scaffold

    names = [n.strip() for n in stage_names.split(",") if n.strip()] if stage_names is not None else None
    if names == []:
        raise click.BadParameter("name at least one stage, e.g. --stages train,evaluate", param_hint="--stages")
    try:
        plan = scaffold.plan(Path.cwd(), names, params_file, ci)
    except CarbonBudgetError as exc:
        _fail(exc)
        return
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    if not plan.changes:
        click.echo("nothing to change: this project already has its carbon budget")
        return
    for change in plan.changes:
        click.echo(change.diff(), nl=False)
    if dry_run:
        click.echo("dry run: nothing written")
        return
    scaffold.apply(Path.cwd(), plan)
    written = ", ".join(change.path.as_posix() for change in plan.changes)
    click.echo(f"wrote {written}; now run `dvc repro` (the gate prints what each stage cost)")


@main.command(
    short_help="Run any command under the energy meter and write its record.",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--stage", required=True, help="Stage name: the record's name and its MLflow run's name.")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the emission record goes (default: metrics/emissions/STAGE.json).",
)
@_params_option("Its `carbon:` section, when present, sets the country, PUE and tracking mode.")
@click.option(
    "--shell",
    "in_shell",
    is_flag=True,
    help="COMMAND is one shell command line: run it under the shell DVC uses ($SHELL, else /bin/sh).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def track(stage: str, output: Path | None, params_file: Path, in_shell: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND (any program, any language) under codecarbon and write the same emission record as a stage
    measured in Python, so the gate and the report work for it unchanged. A training loop inside it that uses
    `TrainingBudget` or a callback reads this meter: one record, energy counted once.

    The command's exit code is passed through; SIGTERM/SIGINT are forwarded to it. Use `--` before the command.
    """
    from carbon_budget.errors import CommandFailed
    from carbon_budget.layout import tracking_uri
    from carbon_budget.measure.track import track as run_tracked
    from carbon_budget.publish import worker
    from carbon_budget.publish.redact import redact

    if in_shell:
        command = (os.environ.get("SHELL") or "/bin/sh", "-c", " ".join(command))
    uri = tracking_uri()
    try:
        worker.ensure_running(uri)  # warm for the gate's --publish; before the meter's threads
        run_tracked(stage, command, output, params_file, mask=lambda text: redact(text, uri))
    except CommandFailed as exc:
        sys.exit(exc.exit_code if exc.exit_code > 0 else 128 - exc.exit_code)
    except CarbonBudgetError as exc:
        click.echo(f"error: {redact(str(exc), uri)}", err=True)  # it may quote the command, secrets and all
        sys.exit(1)


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """A click callback: `2h`, `90m`, `300s` (`0` only where it means "no wait") as a timedelta."""
    from carbon_budget.intensity.window import parse_duration

    if value is None:
        return None
    try:
        duration = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not duration and param.name == "duration":
        raise click.BadParameter("a job takes some time: give e.g. 2h, 90m or 300s")
    return duration


def _utc_time(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """A click callback: an ISO-8601 time with its zone (2026-12-01T12:00:00Z) as a UTC datetime."""
    from carbon_budget.intensity.series import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_FORECAST_HELP = (
    "The intensity forecast: a file (canonical CSV, or Electricity Maps, UK grid, WattTime or carbon-aware-sdk JSON,"
    " told by its content) or a live provider: electricitymaps:ZONE, watttime:REGION, ukgrid,"
    " carbon-aware-sdk:LOCATION (credentials from the environment)."
)


@main.command(short_help="Print the cleanest time to start a job, from an intensity forecast.")
@click.option("--forecast", "source", required=True, metavar="SOURCE", help=_FORECAST_HELP)
@click.option(
    "--duration",
    default=None,
    metavar="D",
    callback=_duration,
    help="How long the job runs: 2h, 90m, 300s. Default: estimated from the emission records of the stages"
    " `dvc status` reports changed.",
)
@click.option(
    "--finish-by",
    default=None,
    metavar="T",
    callback=_utc_time,
    help="The job must end by T (e.g. 2026-12-01T12:00:00Z).",
)
@click.option(
    "--now",
    default=None,
    metavar="T",
    callback=_utc_time,
    help="Plan as if it were T (ISO-8601 with a zone); default: the clock.",
)
@click.option(
    "--energy-kwh",
    type=click.FloatRange(min=0),
    default=None,
    help="The job's energy, to state the saving in grams too (default: from the records when the duration is"
    " estimated).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON: start, end, mean_g_per_kwh, now_g_per_kwh, saving_pct, source, reason (and saving_g, estimate).",
)
def window(
    source: str,
    duration: Any,
    finish_by: Any,
    now: Any,
    energy_kwh: float | None,
    as_json: bool,
) -> None:
    """Print the cleanest time to start a job of duration D: the start whose window has the lowest mean intensity
    in the forecast, that mean, the intensity if started now, and the saving.

    A forecast that has run out, a provider that is down or refuses the key, or no window that fits means "start
    now", with the reason, and exit 0: shifting is advice, never a failure.
    """
    from datetime import UTC, datetime

    from carbon_budget.intensity.estimate import estimate_run
    from carbon_budget.intensity.window import format_duration, plan

    estimate = None
    if duration is None:
        try:
            estimate = estimate_run(Path.cwd())
        except CarbonBudgetError as exc:
            _fail(exc)
            return
        duration = estimate.duration
        energy_kwh = estimate.energy_kwh if energy_kwh is None else energy_kwh
    now = now or datetime.now(UTC)
    chosen, _ = plan(source, Path.cwd(), now, duration, finish_by=finish_by)
    saving_g = chosen.saving_g(energy_kwh) if energy_kwh is not None else None
    if as_json:
        document = chosen.as_dict() | {"saving_g": None if saving_g is None else round(saving_g, 6)}
        document["estimate"] = estimate.how if estimate else None
        click.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    figure = lambda value: "unknown" if value is None else f"{value:.1f} g/kWh"  # noqa: E731
    if estimate is not None:
        click.echo(f"duration: {format_duration(duration)} ({estimate.how})")
    later = f" (in {format_duration(chosen.start - now)})" if chosen.start > now else " (now)"
    click.echo(f"start:   {chosen.as_dict()['start']}{later}")
    click.echo(f"end:     {chosen.as_dict()['end']}")
    click.echo(f"mean:    {figure(chosen.mean_g_per_kwh)} over the window")
    click.echo(f"now:     {figure(chosen.now_g_per_kwh)} if started now")
    saving = "unknown" if chosen.saving_pct is None else f"{chosen.saving_pct:.1f} %"
    click.echo(f"saving:  {saving}" + (f" ({saving_g:.3g} g CO2 for {energy_kwh:.3g} kWh)" if saving_g else ""))
    click.echo(f"source:  {chosen.source}")
    click.echo(f"reason:  {chosen.reason}")


@main.command(
    short_help="Wait for the cleanest start within a limit, then run a command.",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--forecast", "source", required=True, metavar="SOURCE", help=_FORECAST_HELP)
@click.option(
    "--duration", required=True, metavar="D", callback=_duration, help="How long COMMAND runs: 2h, 90m, 300s."
)
@click.option(
    "--max-wait",
    required=True,
    metavar="W",
    callback=_duration,
    help="Wait at most this long for a cleaner start (e.g. 6h); 0 runs COMMAND at once.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def wait(source: str, duration: Any, max_wait: Any, command: tuple[str, ...]) -> None:
    """Sleep until the cleanest start within --max-wait, then run COMMAND and pass its exit code through.

    Says until when it waits and why. SIGINT/SIGTERM end a wait at once (COMMAND does not run) and are passed on to
    COMMAND once it runs. What was predicted and what ran is written to .carbon-budget/carbon-aware.json. Use `--`
    before the command.
    """
    from carbon_budget.intensity import wait as waiting
    from carbon_budget.intensity.window import format_duration, plan

    def say(text: str) -> None:
        click.echo(f"carbon-budget wait: {text}", err=True)

    root = Path.cwd()
    now = waiting.utc_now()
    chosen, series = plan(source, root, now, duration, latest_start=now + max_wait)
    figures = f"{chosen.as_dict()['mean_g_per_kwh']} g/kWh against {chosen.as_dict()['now_g_per_kwh']} now"
    if chosen.start > now:
        announce = (
            f"waiting until {chosen.as_dict()['start']} (in {format_duration(chosen.start - now)}): {figures},"
            f" {chosen.saving_pct} % cleaner; {chosen.reason}"
        )
    else:
        announce = f"running now: {chosen.reason}"
    started_at = ended_at = exit_code = None
    try:
        waiting.sleep_until(chosen.start, say, announce)
        started_at = waiting.utc_now()
        # written as the command starts too, so the gate inside it (`-- dvc repro`) sees the wait it runs under
        waiting.write_outcome(root, waiting.outcome(chosen, series, max_wait.total_seconds(), started_at, None, None))
        exit_code = waiting.run_command(command)
        ended_at = waiting.utc_now()
    except waiting.Interrupted as exc:
        say(str(exc))
        exit_code = 128 + exc.signum
    except CarbonBudgetError as exc:
        say(f"error: {exc}")
        exit_code = 127
    finally:
        document = waiting.outcome(chosen, series, max_wait.total_seconds(), started_at, ended_at, exit_code)
        waiting.write_outcome(root, document)
    sys.exit(exit_code)
