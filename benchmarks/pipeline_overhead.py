"""Where every second of a cold `dvc repro` goes, against a plain script doing the same work.

    python -m benchmarks.pipeline_overhead [--pairs 3] [--epochs 20]

Alternates a cold `dvc repro` in a fresh clone with `benchmarks/plain_digits.py` (`--pairs` times, so the
machine's noise hits both alike) and prints the median ratio; then, from the last clone's records, each
stage's wall time split into interpreter start and imports, tracker start and stop, and its own work; the
peak RSS of the largest stage; the background worker's time and CPU (warm-up, pictures, MLflow); the no-op
repro, `carbon-budget gate` and `--help`; and the pipeline's measured energy against the plain script's,
measured with the same tracker settings (`carbon-budget track`). Add `--json FILE` to keep the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STAGES = ("preprocess", "train", "evaluate", "export", "gate")


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def fresh_clone(base: Path, epochs: int, env: dict[str, str]) -> Path:
    clone = Path(tempfile.mkdtemp(dir=base))
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, env=env)
    # the working tree, committed or not
    for name in ("carbon_budget", "pipeline", "stages", "dvc.yaml", "params.yaml"):
        source, target = ROOT / name, clone / name
        if source.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    if epochs != 20:  # a tiny run (the test suite's): no accuracy floor to fail, and a short inference measurement
        params = yaml.safe_load((clone / "params.yaml").read_text())
        params["train"]["epochs"] = epochs
        params["budget"]["min_accuracy"] = 0.1
        params["export"]["inference_seconds"] = 0.3
        (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return clone


def worker_log(clone: Path) -> list[str]:
    """The lines the background worker of this clone's store wrote (its time and CPU are in no record)."""
    sys.path.insert(0, str(clone))
    from carbon_budget.publish.worker import socket_path

    uri = f"sqlite:///{(clone / 'mlflow.db').resolve().as_posix()}"
    log = socket_path(uri).with_suffix(".log")
    return [line for line in log.read_text().splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)] if log.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    base = Path(tempfile.mkdtemp(prefix="carbon-budget-bench-"))
    env["DVC_SITE_CACHE_DIR"] = str(base / "dvc-site")
    plain = [sys.executable, str(ROOT / "benchmarks/plain_digits.py"), str(args.epochs)]
    pairs = []
    for _ in range(args.pairs):
        clone = fresh_clone(base, args.epochs, env)
        repro_s = timed(["dvc", "repro"], clone, env)
        time.sleep(5)  # let the worker's after-work (model logging) finish before timing the plain script
        plain_s = timed(plain, base, env)
        pairs.append((repro_s, plain_s))
    ratios = [a / b for a, b in pairs]
    records = {s: json.loads((clone / f"metrics/emissions/{s}.json").read_text()) for s in STAGES}
    noop_s = timed(["dvc", "repro"], clone, env)
    gate_s = timed(["carbon-budget", "gate"], clone, env)
    help_s = timed(["carbon-budget", "--help"], clone, env)
    timed(
        ["carbon-budget", "track", "--stage", "plain", "--output", str(base / "plain.json"), "--", *plain], clone, env
    )
    plain_record = json.loads((base / "plain.json").read_text())
    pipeline_kwh = sum(r["energy_kwh"] for r in records.values())

    print(
        f"cold dvc repro / plain script: median {statistics.median(ratios):.2f}"
        f" (pairs: {', '.join(f'{a:.2f}/{b:.2f} s' for a, b in pairs)})"
    )
    print(f"no-op dvc repro {noop_s:.2f} s, carbon-budget gate {gate_s:.2f} s, carbon-budget --help {help_s:.2f} s")
    print("\nstage        start+imports  tracker start  work   tracker stop  peak RSS   energy")
    for name, r in records.items():
        extra = r["extra_metrics"]
        work = r["duration_s"] - extra.get("tracker_start_s", 0)
        print(
            f"{name:<12} {extra.get('startup_s', 0):>10.2f} s {extra.get('tracker_start_s', 0):>11.2f} s"
            f" {work:>6.2f} s {extra.get('tracker_stop_s', 0):>10.2f} s {extra.get('peak_rss_mb', 0):>7.0f} MB"
            f"  {r['energy_kwh'] * 1000:.3f} Wh ({r['methods']['cpu']})"
        )
    largest = max(records.values(), key=lambda r: r["extra_metrics"].get("peak_rss_mb", 0))
    print(f"largest stage: {largest['stage']} at {largest['extra_metrics'].get('peak_rss_mb', 0):.0f} MB peak RSS")
    print("\nbackground worker (warm-up, pictures, MLflow; CPU in brackets, in no stage's record):")
    for line in worker_log(clone):
        print("  " + line)
    print(
        f"\nenergy: pipeline {pipeline_kwh * 1000:.3f} Wh (its stages' records) vs plain script"
        f" {plain_record['energy_kwh'] * 1000:.3f} Wh (same tracker settings):"
        f" {pipeline_kwh / plain_record['energy_kwh']:.2f}x"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "ratio_median": statistics.median(ratios),
                    "pairs_s": pairs,
                    "noop_repro_s": noop_s,
                    "gate_s": gate_s,
                    "help_s": help_s,
                    "pipeline_energy_kwh": pipeline_kwh,
                    "plain_energy_kwh": plain_record["energy_kwh"],
                    "stages": {n: {"duration_s": r["duration_s"], **r["extra_metrics"]} for n, r in records.items()},
                },
                indent=2,
            )
        )
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
