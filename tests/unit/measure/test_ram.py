"""RAM energy follows the memory a stage holds: two commands side by side, one holding about 1 GB and one about
50 MB for the same time, are charged in proportion to their memory, not the same rule-of-thumb watts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from carbon_budget.measure.memory import MemoryMeter
from tests.conftest import BIN

HOLD = """
import sys, time
block = bytearray(int(sys.argv[1]) * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
end = time.time() + 3
while time.time() < end:
    time.sleep(0.05)
"""


@pytest.mark.integration
def test_ram_energy_is_proportional_to_the_memory_held(tmp_path: Path, tool_env: dict[str, str]) -> None:
    (tmp_path / "hold.py").write_text(HOLD)
    runs = {
        mb: subprocess.Popen(
            [
                str(BIN / "carbon-budget"),
                "track",
                "--stage",
                f"hold{mb}",
                "--output",
                f"hold{mb}.json",
                "--",
                str(BIN / "python"),
                "hold.py",
                str(mb),
            ],
            cwd=tmp_path,
            env=tool_env,
        )
        for mb in (1024, 50)
    }
    assert all(process.wait(timeout=300) == 0 for process in runs.values())
    big, small = (json.loads((tmp_path / f"hold{mb}.json").read_text()) for mb in (1024, 50))
    for record in (big, small):
        assert record["methods"]["ram"] == "estimated:rss_x_w_per_gb"
        assert (
            record["extra_metrics"]["ram_w_per_gb"] == 0.392
            and "Cloud Carbon Footprint" in record["tags"]["ram_w_per_gb_source"]
        )
        held_gb = record["extra_metrics"]["ram_gb_s"] / record["duration_s"]
        assert record["ram_energy_kwh"] == pytest.approx(record["extra_metrics"]["ram_gb_s"] * 0.392 / 3.6e6)
        assert 0 < held_gb < 2
    # the commands hold 1 GB and 0.05 GB (plus their interpreters) for 3 s of a longer stage; the wrapper's own
    # interpreter is not the command's
    ratio = big["ram_energy_kwh"] / small["ram_energy_kwh"]
    assert ratio > 5, ratio
    assert big["extra_metrics"]["ram_gb_s"] > 3 * 1.0  # 1 GB (1.07e9 bytes) for at least 3 s
    # in proportion: what the big one pays beyond the small one is the 974 MiB more it held, for at least its 3 s
    # and at most the whole time its stage ran (filling and freeing a GB takes longer on a busy host), not a
    # constant (the same interpreter and start-up in both cancel out)
    extra_gb_s, more_gb = big["extra_metrics"]["ram_gb_s"] - small["extra_metrics"]["ram_gb_s"], 974 * 2**20 / 1e9
    assert 0.8 * more_gb * 3 < extra_gb_s < 1.1 * more_gb * big["duration_s"], (extra_gb_s, big["duration_s"])


def test_the_ram_rate_names_where_it_came_from() -> None:
    from carbon_budget.measure.memory import ram_source

    assert "default 0.392 W/GB: Cloud Carbon Footprint" in ram_source(0.392)
    assert ram_source(0.5) == "carbon.ram_w_per_gb = 0.5 W/GB, the project's own figure in params.yaml"


def test_memory_meter_integrates_what_the_process_holds() -> None:
    meter = MemoryMeter(sample_every_s=0.05)
    meter.start()
    block = bytearray(200 * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])
    before = meter.gb_seconds()
    import time

    time.sleep(0.5)
    during = meter.gb_seconds() - before
    del block
    meter.stop()
    assert during > 0.5 * 0.2  # at least 200 MB for half a second (plus the interpreter)
