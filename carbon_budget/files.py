"""One way to write files: JSON with sorted keys and a trailing newline, always by atomic rename.

Sorted keys keep `git diff` and `dvc metrics diff` clean; the rename means a crash never leaves half a file
that a later stage could read as valid.
"""

from __future__ import annotations

import functools
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


# YAML 1.2's core schema, as DVC reads params.yaml, dvc.yaml and dvc.lock (ruamel.yaml): `1e-3` is a float,
# `on`/`yes` are strings, `017` is seventeen. PyYAML alone reads YAML 1.1, where the first is a string and the
# others a boolean and fifteen: a params value compared with dvc.lock would then never match. The patterns are
# ruamel.yaml's own for version 1.2, so both parsers agree on every scalar (tests/unit/test_yaml12.py holds them).
_YAML12_RESOLVERS = (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", tuple("tTfF")),
    (
        "tag:yaml.org,2002:float",
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        tuple("-+0123456789."),
    ),
    (
        "tag:yaml.org,2002:int",
        r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0o?[0-7_]+
        |[-+]?[0-9_]+
        |[-+]?0x[0-9a-fA-F_]+)$""",
        tuple("-+0123456789"),
    ),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", ("<",)),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ("~", "n", "N", "")),  # "": an empty value
    (
        "tag:yaml.org,2002:timestamp",
        r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
        (?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
        (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
        tuple("0123456789"),
    ),
)


def _yaml12_int(loader: Any, node: Any) -> int:
    """An int as YAML 1.2 reads it: `0o17` and `0x1f` by their prefix, a leading zero alone is still decimal."""
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-").lower()
    for prefix, base in (("0b", 2), ("0o", 8), ("0x", 16)):
        if digits.startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits)


@functools.cache
def _yaml12_loader() -> Any:
    """libyaml's C parser when PyYAML has it (~10x faster than the pure-Python one, which was a fifth of
    `carbon-budget gate`'s time), with YAML 1.2's resolvers in place of 1.1's."""
    import re

    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader: Any = type("Yaml12Loader", (base,), {"yaml_implicit_resolvers": {}})
    for tag, pattern, first in _YAML12_RESOLVERS:
        loader.add_implicit_resolver(tag, re.compile(pattern, re.X), list(first))
    loader.add_constructor("tag:yaml.org,2002:int", _yaml12_int)
    return loader


def parse_yaml(text: str) -> Any:
    """YAML read the way DVC reads it (YAML 1.2), so a value compared with dvc.lock means the same to both."""
    import yaml

    return yaml.load(text, Loader=_yaml12_loader())


def cache_dir() -> Path:
    """Where the plugin keeps what it learnt on this machine (codecarbon's hardware plans, an empty MLflow store):
    `CARBON_BUDGET_CACHE_DIR`, else `$XDG_CACHE_HOME/carbon-budget`, else `~/.cache/carbon-budget`."""
    base = os.environ.get("CARBON_BUDGET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "carbon-budget"
    )
    return Path(base)
