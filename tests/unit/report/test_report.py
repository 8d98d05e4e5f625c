"""The report's comparisons and units, on plain data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from carbon_budget.errors import CarbonBudgetError
from carbon_budget.gate.budgets import BudgetLine, Verdict
from carbon_budget.layout import record_path
from carbon_budget.records.fingerprint import unlike
from carbon_budget.records.record import save_record
from carbon_budget.report.compare import budget_changes, compare, params_changes
from carbon_budget.report.markdown import energy, mass, render_markdown, size
from carbon_budget.report.noise import Noise
from carbon_budget.report.remeasure import _median_run, _spreads
from carbon_budget.report.sides import Side, base_side, git_commit, in_project, judged_side
from tests.conftest import record, run


def side(label: str, energy_kwh: float, epochs: int = 20, budget: float = 0.001) -> Side:
    record = {
        "energy_kwh": energy_kwh,
        "co2_kg": energy_kwh * 0.4,
        "duration_s": 2.0,
        "methods": {"cpu": "estimated:cpu_load_x_tdp", "gpu": "none", "ram": "estimated:ram_rule"},
    }
    return Side(
        label,
        {"train": {"epochs": epochs}, "budget": {"energy_kwh": budget, "min_accuracy": 0.9}},
        {"train": record},
        {"model_size_mb": 0.08, "parameters": 17226, "deploy": {"accuracy": 0.97}},
    )


def test_raised_energy_budget_is_a_loosening_and_raised_accuracy_floor_is_not() -> None:
    base = {"budget": {"energy_kwh": 0.002, "min_accuracy": 0.9, "co2_kg": 1.0}}
    now = {"budget": {"energy_kwh": 0.02, "min_accuracy": 0.95}}
    changes = {c["key"]: c for c in budget_changes(now, base)}
    assert changes["budget.energy_kwh"]["change"] == "raised" and changes["budget.energy_kwh"]["loosened"]
    assert changes["budget.min_accuracy"]["change"] == "raised" and not changes["budget.min_accuracy"]["loosened"]
    assert changes["budget.co2_kg"]["change"] == "removed" and changes["budget.co2_kg"]["loosened"]


def test_raising_any_ceiling_is_a_loosening_whatever_its_name() -> None:
    """Every budget but the accuracy floor is a ceiling: the per-prediction, lifetime and SCI ones too."""
    keys = ("inference_wh_per_1k", "inference_co2_g_per_1k", "lifetime_co2_kg", "sci_g_per_run")
    changes = budget_changes({"budget": dict.fromkeys(keys, 2.0)}, {"budget": dict.fromkeys(keys, 1.0)})
    assert [c["key"] for c in changes if c["loosened"]] == sorted(f"budget.{k}" for k in keys)
    lowered = budget_changes({"budget": dict.fromkeys(keys, 0.5)}, {"budget": dict.fromkeys(keys, 1.0)})
    assert not any(c["loosened"] for c in lowered)


def test_sci_against_base_from_each_sides_records_and_params() -> None:
    """The SCI rows compare each revision's own score: the base's records under the base's `sci` params."""
    now, base = side("now", 0.002), side("main", 0.001)
    now.params["sci"] = {"resource_share": 0.5}
    inference = {"energy_per_1k_predictions_kwh": 2e-6, "co2_per_1k_predictions_g": 8e-4}
    inference |= {"measured_seconds": 2.0, "measured_predictions": 1_000_000}
    now.export["deploy"]["inference"] = inference
    now.params["budget"]["sci_g_per_run"] = 5.0
    report = compare(now, base, Verdict([]), "abc123")
    life_s = 4 * 365.25 * 86400
    # E x I + M: 0.002 kWh x 400 g/kWh + 1,000,000 g x 2 s / 4 years x share
    assert report["totals"]["sci_g_per_run"]["current"] == pytest.approx(0.8 + 1e6 * 2 / life_s * 0.5)
    assert report["totals"]["sci_g_per_run"]["base"] == pytest.approx(0.4 + 1e6 * 2 / life_s)
    assert report["totals"]["sci_g_per_run"]["budget"] == 5.0
    assert report["totals"]["sci_g_per_1k_predictions"]["base"] is None  # the base measured no prediction
    assert report["sci"]["inference"]["sci_g"] == report["totals"]["sci_g_per_1k_predictions"]["current"]
    markdown = render_markdown(report)
    assert "| SCI per training run | 808 mg | 416 mg | +392 mg (+94.3%) |" in markdown and "| 5 g |" in markdown
    assert "- SCI (one training run): 0.8079 g CO2-eq = E 0.002 kWh x I 400 g/kWh" in markdown


def test_params_diff_leaves_budgets_to_their_own_section() -> None:
    changes = params_changes(
        {"train": {"epochs": 22}, "budget": {"energy_kwh": 1}}, {"train": {"epochs": 20}, "budget": {"energy_kwh": 2}}
    )
    assert changes == [{"key": "train.epochs", "base": 20, "current": 22}]


def test_readable_units() -> None:
    assert energy(2.5) == "2.5 kWh" and energy(0.0025) == "2.5 Wh" and energy(2.5e-5) == "25 mWh"
    assert mass(0.004) == "4 g" and mass(4e-6) == "4 mg"
    assert size(0.082) == "82 KB" and size(3.0) == "3 MB"


def test_compare_and_markdown() -> None:
    report = compare(side("now", 0.002, epochs=22, budget=0.01), side("main", 0.001), Verdict([]), "abc123")
    assert report["totals"]["energy_kwh"]["delta_pct"] == 100.0
    assert report["stages"][0]["energy_kwh"]["delta"] == 0.001
    markdown = render_markdown(report)
    assert "within budget" in markdown
    assert "budget.energy_kwh raised** 0.001 → 0.01 in this change" in markdown
    assert "| train.epochs | 20 | 22 |" in markdown
    assert "+1 Wh (+100.0%)" in markdown


def test_the_report_words_a_failing_verdict_as_the_gate_does() -> None:
    over = Verdict([BudgetLine("energy (total)", "budget.energy_kwh", "kWh", 0.001, 0.002)])
    markdown = render_markdown(compare(side("now", 0.002), None, over, None))
    assert "## ❌ Carbon budget exceeded" in markdown and over.summary().startswith("carbon budget exceeded:")
    assert "energy (total): 0.002 kWh > budget 0.001 kWh (params.yaml budget.energy_kwh)" in markdown


def test_base_without_records_says_so() -> None:
    empty = Side("main", {}, {})
    report = compare(side("now", 0.002), empty, Verdict([], ["metrics/emissions/x.json: missing"]), "abc")
    markdown = render_markdown(report)
    # the gate's own words: missing evidence is no "over budget"
    assert "## ❌ Carbon budget cannot be verified: its evidence is missing or broken" in markdown
    assert "has no emission records yet" in markdown
    assert report["totals"]["energy_kwh"]["delta"] is None


def test_a_project_without_a_model_gets_no_empty_model_rows() -> None:
    record = {"energy_kwh": 1e-5, "co2_kg": 4e-6, "duration_s": 1.0, "methods": {}}
    tracked = Side("work tree", {"budget": {"energy_kwh": 0.01}}, {"sort": record})
    markdown = render_markdown(compare(tracked, None, Verdict([])))
    assert "| energy |" in markdown and "| sort |" in markdown
    for label in ("model size", "parameters", "test accuracy", "accuracy per kWh"):
        assert f"| {label} |" not in markdown


def measured_side(
    label: str, energy_kwh: float, cpu_model: str = "Intel(R) Xeon(R) Processor", cpu_s: float = 5.0
) -> Side:
    """A side whose train record says what measured it, as records written today do."""
    plain = side(label, energy_kwh)
    record = {
        **plain.records["train"],
        "record_id": f"{label}-train",
        "pue": 1.0,
        "tracking_mode": "process",
        "hardware": {"cpu_model": cpu_model, "cpu_count": 2, "cpu_tdp_w": 8.0, "gpu_model": "", "gpu_count": 0},
        "extra_metrics": {"ram_w_per_gb": 0.392, "cpu_s": cpu_s},
    }
    return Side(label, plain.params, {"train": record}, plain.export)


def test_every_figure_carries_its_change_noise_and_significance() -> None:
    document = compare(measured_side("head", 1.05e-5), measured_side("base", 1e-5), Verdict([]))
    energy_total = document["totals"]["energy_kwh"]
    assert {"change_pct", "noise_pct", "significant"} <= set(energy_total)
    assert energy_total["change_pct"] == pytest.approx(5.0) and energy_total["noise_pct"] == 10.0
    assert energy_total["significant"] is False and energy_total["verdict"] == "no significant change"
    assert "default" in document["noise"]["source"]  # said to be a default, not a measurement
    train = document["stages"][0]
    assert train["energy_kwh"]["significant"] is False and train["cpu_s"]["change_pct"] == pytest.approx(0.0)
    assert "no significant change (±10.0 %)" in render_markdown(document)


def test_tripled_training_is_a_significant_regression() -> None:
    document = compare(measured_side("head", 3e-5, cpu_s=15.0), measured_side("base", 1e-5), Verdict([]))
    assert document["totals"]["energy_kwh"]["significant"] is True
    assert document["totals"]["energy_kwh"]["verdict"] == "regression"
    assert document["stages"][0]["cpu_s"]["verdict"] == "regression"
    assert "**regression**" in render_markdown(document)


def test_a_band_measured_wider_than_the_default_wins() -> None:
    noise = Noise("remeasured", 10.0, {"total.energy_kwh": 25.0})
    document = compare(measured_side("head", 1.2e-5), measured_side("base", 1e-5), Verdict([]), noise=noise)
    assert document["totals"]["energy_kwh"]["noise_pct"] == 25.0
    assert document["totals"]["energy_kwh"]["significant"] is False


def test_records_measured_differently_are_never_compared_for_energy() -> None:
    """Half the energy on another CPU is not an improvement: it says what differs, claims nothing; work is compared."""
    base = measured_side("base", 2e-5, cpu_model="Other Vendor CPU 9000")
    document = compare(measured_side("head", 1e-5), base, Verdict([]))
    for entry in (document["totals"]["energy_kwh"], document["totals"]["co2_kg"], document["stages"][0]["energy_kwh"]):
        assert entry["significant"] is False and entry["change_pct"] is None and entry["verdict"] == "not compared"
    assert "base measured on Other Vendor CPU 9000 x2 at 8 W" in document["stages"][0]["not_compared"]
    assert document["stages"][0]["cpu_s"]["verdict"] == "no significant change"  # work figures still compared
    assert "no regression is claimed" in render_markdown(document)
    assert unlike(base.records["train"], base.records["train"]) is None


def test_a_stage_dvc_did_not_rerun_is_marked() -> None:
    head, base = measured_side("head", 1e-5), measured_side("base", 1e-5)
    head.records["train"]["record_id"] = base.records["train"]["record_id"]
    document = compare(head, base, Verdict([]))
    assert document["stages"][0]["rerun"] is False
    assert "not rerun (the base's record)" in render_markdown(document)


def test_remeasured_sides_keep_a_median_run_whose_stages_add_up() -> None:
    runs = [{"train": {"energy_kwh": e, "co2_kg": e * 0.4, "duration_s": 1.0}} for e in (1.0, 1.2, 0.9)]
    assert _median_run(runs)["train"]["energy_kwh"] == 1.0
    assert _spreads(runs)["total.energy_kwh"] == pytest.approx(30.0)


def test_what_this_change_loosens_is_named_and_the_verdict_is_no_plain_pass() -> None:
    """A stage the base counted and the head does not, a new exemption, any setting every figure is computed with:
    each by name, beside a raised budget; a dropped exemption or a reworded reason loosens nothing."""
    base, head = side("main", 1e-5), side("now", 1e-5)
    base.records["evaluate"] = {**base.records["train"], "energy_kwh": 4e-6}
    base.params.update(carbon={"intensity_g_per_kwh": None}, usage={"predictions": {"per_day": 100, "days": 365}})
    base.params["budget"]["exempt"] = {"lint": "no CPU worth measuring", "docs": "static files"}
    head.params.update(carbon={"intensity_g_per_kwh": 50.0}, usage={"predictions": {"per_day": 100, "days": 30}})
    head.params["budget"].update(energy_kwh=0.002, exempt={"lint": "reworded", "evaluate": "trust me"})
    document = compare(head, base, Verdict([]), "abc123")
    loosened = {c["key"]: c for c in document["loosened"]}
    assert sorted(loosened) == [
        "budget.energy_kwh",
        "budget.exempt.evaluate",
        "carbon.intensity_g_per_kwh",
        "evaluate",
        "usage.predictions.days",
    ]
    assert loosened["evaluate"]["change"] == "no longer counted" and loosened["evaluate"]["base"] == 4e-6
    assert document["verdict"] == {"passed": True, "heading": "within budget", "failures": [], "loosened": True}
    evaluate = next(s for s in document["stages"] if s["stage"] == "evaluate")
    assert evaluate["counted"] is False and evaluate["energy_kwh"]["base"] == 4e-6
    assert document["totals"]["energy_kwh"]["verdict"] == "not compared"  # a total over fewer stages is no saving
    markdown = render_markdown(document)
    assert markdown.splitlines()[1] == "## ⚠️ Carbon budget: within budget, loosened by this change"
    assert "- ⚠️ **evaluate** no longer counted: 4 mWh at base" in markdown
    assert "- ⚠️ **budget.exempt.evaluate added** None → trust me (a stage exempted from the budget)" in markdown
    assert "- ⚠️ **carbon.intensity_g_per_kwh changed** None → 50.0" in markdown
    assert "| evaluate | – | – | 4 mWh |" not in markdown and "**not counted in this revision**" in markdown

    same = compare(side("now", 1e-5), side("main", 1e-5), Verdict([]), "abc123")
    assert same["loosened"] == [] and render_markdown(same).splitlines()[1] == "## ✅ Carbon budget: within budget"


DVC_YAML = """stages:
  {stages}
  gate:
    cmd: carbon-budget gate --params carbon.yaml
    deps: [{deps}]
"""


def write_revision(repo: Path, stages: list[str], env: dict[str, str]) -> str:
    """A project of `stages`, each declaring its record, under a gate that depends on them, with its params in
    carbon.yaml (no params.yaml at all): committed, its commit returned."""
    body = "\n  ".join(f"{s}:\n    cmd: work\n    outs: [{record_path(s).as_posix()}]" for s in stages)
    deps = ", ".join(record_path(s).as_posix() for s in stages)
    (repo / "dvc.yaml").write_text(DVC_YAML.format(stages=body, deps=deps))
    for stale in (repo / "metrics/emissions").glob("*.json"):
        stale.unlink()
    for number, stage in enumerate(stages, start=1):
        save_record(repo / record_path(stage), record(stage, number * 1e-5))
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", f"stages {stages}"], repo, env)
    return run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()


def test_the_base_is_judged_with_its_own_stages_and_params_file(tmp_path: Path, tool_env: dict[str, str]) -> None:
    """The base's total is its own gate's, whatever stages the head's gate counts, from the `--params` file."""
    repo = tmp_path / "repo"
    (repo / "metrics/emissions").mkdir(parents=True)
    run(["git", "init", "-q"], repo, tool_env)
    (repo / "carbon.yaml").write_text(yaml.safe_dump({"budget": {"energy_kwh": 0.001, "co2_kg": 1.0}}))
    base_commit = write_revision(repo, ["prepare", "train", "evaluate"], tool_env)
    write_revision(repo, ["prepare", "evaluate"], tool_env)  # train out of the pipeline and out of the gate
    (repo / "carbon.yaml").write_text(yaml.safe_dump({"budget": {"energy_kwh": 0.002, "co2_kg": 1.0}}))  # uncommitted

    head, verdict = judged_side("work tree", repo, repo / "carbon.yaml")
    base = base_side("main", repo, base_commit, in_project(repo, repo / "carbon.yaml"))
    assert list(base.records) == ["prepare", "train", "evaluate"] and list(head.records) == ["prepare", "evaluate"]
    assert base.total("energy_kwh") == pytest.approx(6e-5) and head.total("energy_kwh") == pytest.approx(3e-5)
    assert base.params["budget"]["energy_kwh"] == 0.001  # the base's own carbon.yaml, not the head's
    document = compare(head, base, verdict, base_commit)
    assert [c["key"] for c in document["loosened"]] == ["budget.energy_kwh", "train"]
    assert document["totals"]["energy_kwh"]["base"] == pytest.approx(6e-5)
    assert "**train** no longer counted: 20 mWh at base" in render_markdown(document)
    with pytest.raises(CarbonBudgetError, match="not inside the project"):
        in_project(repo, tmp_path / "elsewhere.yaml")


def test_a_base_this_version_cannot_judge_is_compared_with_nothing_and_says_why(
    tmp_path: Path, tool_env: dict[str, str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    run(["git", "init", "-q"], repo, tool_env)
    (repo / "carbon.yaml").write_text(yaml.safe_dump({"budget": {"energy_kwh": 0.001, "co2_kg": 1.0}}))
    run(["git", "add", "-A"], repo, tool_env)
    run(["git", "commit", "-qm", "before any pipeline"], repo, tool_env)
    base = base_side("main", repo, git_commit(repo, "HEAD"), Path("carbon.yaml"))
    assert base.records == {} and base.unjudged is not None and "dvc.yaml" in base.unjudged
    assert base.params == {"budget": {"energy_kwh": 0.001, "co2_kg": 1.0}}
    markdown = render_markdown(compare(side("now", 1e-5), base, Verdict([]), "abc123"))
    assert "_Base `main` could not be judged by this version (" in markdown
