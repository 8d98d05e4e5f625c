"""The benchmarks run on tiny settings and print their headline figure, so they cannot rot."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT, run


@pytest.mark.integration
def test_pipeline_overhead_benchmark_prints_a_ratio(tool_env: dict[str, str]) -> None:
    out = run([sys.executable, "-m", "benchmarks.pipeline_overhead", "--pairs", "1", "--epochs", "2"], ROOT, tool_env)
    assert "cold dvc repro / plain script: median" in out.stdout
    assert "largest stage:" in out.stdout and "background worker" in out.stdout and "energy: pipeline" in out.stdout


def test_tracking_overhead_benchmark_prints_a_ratio(tool_env: dict[str, str]) -> None:
    out = run([sys.executable, "-m", "benchmarks.tracking_overhead", "--repeats", "1", "--epochs", "2"], ROOT, tool_env)
    assert "tracked / untracked wall time: median" in out.stdout


def test_export_benchmark_prints_ratios(tool_env: dict[str, str]) -> None:
    out = run([sys.executable, "-m", "benchmarks.export_artifacts", "--epochs", "2"], ROOT, tool_env)
    assert "smaller than fp32 ONNX" in out.stdout


@pytest.mark.integration
def test_callback_benchmark_prints_forecast_error_and_savings(tool_env: dict[str, str]) -> None:
    out = run(
        [sys.executable, "-m", "benchmarks.budget_callbacks", "--epochs", "40", "--frameworks", "plain"], ROOT, tool_env
    )
    assert "first forecast (after epoch" in out.stdout and "the abort saved" in out.stdout


@pytest.mark.integration
def test_attribution_benchmark_prints_what_the_records_hold(tool_env: dict[str, str]) -> None:
    out = run([sys.executable, "-m", "benchmarks.attribution", "cpu", "--epochs", "2"], ROOT, tool_env)
    assert "% of what the pipeline's own processes spent" in out.stdout and "the tool's own cost" in out.stdout


@pytest.mark.integration
def test_noise_benchmark_prints_the_false_regression_rate_and_the_smallest_detected_change(
    tool_env: dict[str, str],
) -> None:
    argv = ["--runs", "3", "--history", "2", "--epochs", "2", "--factors", "3", "--warm-up", "0"]
    out = run([sys.executable, "-m", "benchmarks.noise", *argv], ROOT, tool_env).stdout
    assert "false regressions, history mode (2 past runs" in out and "total " in out
    assert "false regressions, default band alone" in out
    assert "smallest detected change:" in out
