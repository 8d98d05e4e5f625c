"""What measuring costs training: the same training with and without an energy meter, interleaved.

    python -m benchmarks.tracking_overhead [--repeats 5] [--epochs 150]

Each repetition trains the default model twice in this process, once bare and once inside an EnergyMeter
that is read the way the train stage reads it for its forecast (order alternates, so drift hits both). Prints
the median wall-time ratio tracked/untracked and the CPU time the tracker itself used.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from carbon_budget.config import CarbonParams, ForecastParams
from carbon_budget.measure.energy import EnergyMeter
from carbon_budget.measure.forecast import Forecaster
from pipeline.config import DataParams, ModelParams, TrainParams
from pipeline.data import load_dataset, prepare
from pipeline.models import build_model, model_config
from pipeline.training import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=150)
    args = parser.parse_args()
    splits = prepare(load_dataset(DataParams(), Path.cwd()), DataParams())
    config = model_config(ModelParams(), 64, 10, None)
    params = TrainParams(epochs=args.epochs)
    forecast = ForecastParams()

    def untracked() -> None:
        train_model(build_model(config, seed=1), splits, params, torch.device("cpu"))

    def tracked() -> None:
        meter = EnergyMeter(CarbonParams(), "overhead")
        meter.start()
        forecaster = Forecaster(
            params.epochs, forecast.warmup_epochs, None, 400.0, forecast.sample_every_s, forecast.min_window_s
        )
        train_model(
            build_model(config, seed=1),
            splits,
            params,
            torch.device("cpu"),
            on_epoch=lambda epoch: forecaster.observe(epoch.epoch, meter.sample_kwh) and None,
        )
        meter.stop()

    untracked(), tracked()  # warm both paths (imports, first-call costs) before timing
    ratios, tracker_cpu = [], []
    for repeat in range(args.repeats):
        times = {}
        for name, run in sorted({"untracked": untracked, "tracked": tracked}.items(), reverse=repeat % 2 == 1):
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[name] = (time.perf_counter() - wall, time.process_time() - cpu)
        ratios.append(times["tracked"][0] / times["untracked"][0])
        tracker_cpu.append(times["tracked"][1] - times["untracked"][1])
    print(
        f"tracked / untracked wall time: median {statistics.median(ratios):.3f}"
        f" (runs: {', '.join(f'{r:.3f}' for r in ratios)}); tracker CPU per run: median"
        f" {statistics.median(tracker_cpu) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
