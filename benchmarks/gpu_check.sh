#!/usr/bin/env bash
# GPU path check (run on a machine with an NVIDIA GPU): CUDA training and NVML energy in the train record.
# Needs the project's runtime packages importable (PYTHONPATH) and writes its evidence to ${OUT:-gpu-check}/.
set -uo pipefail
out=${OUT:-gpu-check}; mkdir -p "$out"
export CARBON_BUDGET_WORKER=off CARBON_BUDGET_CACHE_DIR=/tmp/carbon-budget-cache PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$out/nvidia-smi.txt"
python3 - <<'PY'
import yaml
p = yaml.safe_load(open("params.yaml"))
p["train"]["epochs"] = 200
p["train"]["batch_size"] = 64
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
PY
python3 -m stages.preprocess && python3 -m stages.train 2>&1 | tail -3
cp metrics/emissions/train.json "$out/train-record.json"; cp metrics/train.json "$out/train-metrics.json"
python3 - <<'PY' | tee "$out/nvml-meter.txt"
import time, torch
from carbon_budget.config import CarbonParams
from carbon_budget.measure.energy import EnergyMeter
meter = EnergyMeter(CarbonParams(measure_power_secs=1.0), "gpu-burn")
meter.start()
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + 8
while time.time() < end:
    (a @ a).sum().item()
r = meter.stop()
print(f"gpu busy 8 s: gpu_energy_kwh={r.gpu_energy_kwh:.3e} ({r.gpu_energy_kwh*3.6e6/ r.duration_s:.0f} W mean)"
      f" cpu={r.cpu_energy_kwh:.3e} ram={r.ram_energy_kwh:.3e} methods={r.methods} hardware={r.hardware}")
PY
python3 -c "
import json; r=json.load(open('metrics/emissions/train.json')); m=json.load(open('metrics/train.json'))
print('train record:', r['status'], 'device', m['device'], 'epochs', m['epochs_run'], 'val_acc %.3f' % m['val_accuracy'],
      'duration %.1f s' % r['duration_s'], 'energy %.3e kWh (cpu %.2e gpu %.2e ram %.2e)' % (r['energy_kwh'], r['cpu_energy_kwh'], r['gpu_energy_kwh'], r['ram_energy_kwh']),
      'methods', r['methods'], 'gpu', r['hardware']['gpu_model'], r['hardware']['gpu_count'],
      'forecast err %.1f%%' % ((r['extra_metrics'].get('forecast_energy_kwh', 0) - r['energy_kwh']) / r['energy_kwh'] * 100))
" | tee "$out/summary.txt"
