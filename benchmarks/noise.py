"""How often does the report call noise a regression on this machine, and what is the smallest change it catches?

    python -m benchmarks.noise [--runs 13] [--history 3] [--epochs 20] [--factors 1.25,1.5,2,3] [--warm-up 1]

One fresh clone of the default pipeline, `dvc repro --force` `--runs` times at one commit, as users run it (the
background worker on). Every run after the first `--history` is compared with the `--history` runs before it
exactly as the report's MLflow-history mode compares a head with the base branch's executions (median as the base,
the 99 % prediction interval as the band, never under `report.noise_pct`): a `significant` change there is a
false regression (or improvement), since nothing changed. The same runs are also compared pairwise, one against
the next, with the default band alone (what a report with no repeated measurement does).

Then heads with `train.epochs` multiplied by each of `--factors` are each measured once and compared with the last
`--history` same-commit runs: the smallest factor whose train-stage energy change is significant is the smallest
change the report detects here, printed with the energy change it caused.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import yaml

from benchmarks.pipeline_overhead import BIN, STAGES, fresh_clone
from carbon_budget.config import ReportParams
from carbon_budget.report.noise import judge, prediction_band_pct


def measure(clone: Path, env: dict[str, str]) -> dict[str, float]:
    """One forced execution: each stage's energy and their total, in kWh."""
    subprocess.run(["dvc", "repro", "--force"], cwd=clone, env=env, check=True, capture_output=True)
    energy = {s: json.loads((clone / f"metrics/emissions/{s}.json").read_text())["energy_kwh"] for s in STAGES}
    return {**energy, "total": sum(energy.values())}


def verdicts(head: dict[str, float], history: list[dict[str, float]], floor: float) -> dict[str, dict]:
    """The report's history-mode judgement of each figure of `head` against `history`."""
    found = {}
    for name, value in head.items():
        past = [run[name] for run in history]
        middle = statistics.median(past)
        band = max(prediction_band_pct(past) if len(past) > 1 else 0.0, floor)
        found[name] = judge((value - middle) / middle * 100, band)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=13)
    parser.add_argument("--history", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--factors", default="1.25,1.5,2,3")
    parser.add_argument("--warm-up", type=int, default=1, help="uncounted executions first; 0: a smoke run")
    args = parser.parse_args()
    floor = ReportParams().noise_pct
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    base = Path(tempfile.mkdtemp(prefix="carbon-budget-bench-"))
    env["DVC_SITE_CACHE_DIR"] = str(base / "dvc-site")
    try:
        clone = fresh_clone(base, args.epochs, env)
        for _ in range(args.warm_up):  # a fresh clone's first execution runs on cold caches: not counted
            subprocess.run(["dvc", "repro"], cwd=clone, env=env, check=True, capture_output=True)
        runs = []
        for index in range(args.runs):
            runs.append(measure(clone, env))
            print(
                f"run {index + 1}/{args.runs}: total {runs[-1]['total'] * 1000:.4f} Wh,"
                f" train {runs[-1]['train'] * 1000:.4f} Wh",
                flush=True,
            )
        spread = {
            name: (max(r[name] for r in runs) - min(r[name] for r in runs))
            / statistics.median(r[name] for r in runs)
            * 100
            for name in runs[0]
        }
        print("same commit, range over all runs: " + ", ".join(f"{n} {v:.1f} %" for n, v in spread.items()))

        history_flags, history_total, history_count = 0, 0, 0
        for index in range(args.history, len(runs)):
            judged = verdicts(runs[index], runs[index - args.history : index], floor)
            history_count += 1
            history_flags += any(v["significant"] for v in judged.values())
            history_total += judged["total"]["significant"]
        pair_flags, pair_total, pair_count = 0, 0, 0
        for before, after in itertools.pairwise(runs):
            judged = {n: judge((after[n] - before[n]) / before[n] * 100, floor) for n in after}
            pair_count += 1
            pair_flags += any(v["significant"] for v in judged.values())
            pair_total += judged["total"]["significant"]
        print(
            f"false regressions, history mode ({args.history} past runs, 99 % prediction band, floor {floor:g} %):"
            f" total {history_total}/{history_count}, any stage or total {history_flags}/{history_count}"
        )
        print(
            f"false regressions, default band alone (one run against the next, {floor:g} %):"
            f" total {pair_total}/{pair_count}, any stage or total {pair_flags}/{pair_count}"
        )

        history = runs[-args.history :]
        params_file = clone / "params.yaml"
        params = yaml.safe_load(params_file.read_text())
        detected = None
        for factor in (float(f) for f in args.factors.split(",")):
            params["train"]["epochs"] = round(args.epochs * factor)
            params_file.write_text(yaml.safe_dump(params, sort_keys=False))
            judged = verdicts(measure(clone, env), history, floor)
            train, total = judged["train"], judged["total"]
            print(
                f"train.epochs x{factor:g}: train {train['change_pct']:+.1f} % (band {train['noise_pct']:.1f} %,"
                f" {train['verdict']}), total {total['change_pct']:+.1f} % (band {total['noise_pct']:.1f} %,"
                f" {total['verdict']})",
                flush=True,
            )
            if detected is None and train["significant"] and train["change_pct"] > 0:
                detected = (factor, train["change_pct"])
        if detected is None:
            print("smallest detected change: none of the factors tried")
        else:
            print(f"smallest detected change: train.epochs x{detected[0]:g} ({detected[1]:+.1f} % train energy)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
