"""One way to write files: JSON with sorted keys and a trailing newline, always by atomic rename.

Sorted keys keep `git diff` and `dvc metrics diff` clean; the rename means a crash never leaves half a file
that a later stage could read as valid.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory, then rename over the target."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Binary files (splits, models) the same way: a crash mid-write leaves the previous file, never half a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() would honour the umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any) -> None:
    """Write `data` as stable, human-diffable JSON."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """Read JSON; callers turn OSError/ValueError into their own domain error with the file named."""
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """A small table (DVC plot data) with the first row's keys as header."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def parse_yaml(text: str) -> Any:
    """YAML through libyaml's C parser when PyYAML has it: ~10x faster than the pure-Python one, which was a
    fifth of `carbon-budget gate`'s time."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def cache_dir() -> Path:
    """Where the plugin keeps what it learnt on this machine (codecarbon's hardware plans, an empty MLflow store):
    `CARBON_BUDGET_CACHE_DIR`, else `$XDG_CACHE_HOME/carbon-budget`, else `~/.cache/carbon-budget`."""
    base = os.environ.get("CARBON_BUDGET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "carbon-budget"
    )
    return Path(base)
