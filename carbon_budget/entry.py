"""How a DVC stage script runs its main(): the top of the plugin, where errors become exit codes.

A stage that is part of a published execution asks for the background MLflow worker here, before its meter
starts (the worker is forked off, and must not count in the stage's process tree); measuring itself never
starts publishing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from carbon_budget.errors import CarbonBudgetError


def stage_main(main: Callable[[], None]) -> None:
    """Run a stage's main(): a user-caused error becomes one message on stderr and exit code 1, not a traceback.

    The process then ends with os._exit: every file the stage writes is already closed and renamed into
    place, and the interpreter's teardown after importing torch costs ~0.45 s here (a fifth of a stage) while
    doing nothing a stage needs.
    """
    from carbon_budget.layout import tracking_uri
    from carbon_budget.publish import worker

    worker.ensure_running(tracking_uri())  # warm for the gate stage's publishing, off this stage's process tree
    code = 0
    try:
        main()
    except CarbonBudgetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
