"""What the background worker runs: `python -m carbon_budget.publish.service`, started by `worker.ensure_running`.

The worker module knows sockets and processes, not MLflow; this module binds it to the publishing jobs, so
imports point one way (service -> tracking -> worker).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from carbon_budget.publish import plots, tracking, worker


def jobs(uri: str) -> dict[str, Callable[..., Any]]:
    """Import and open what publishing needs (matplotlib, MLflow and its store), then return the jobs by name."""
    plots.warm_up()
    tracking.warm_up(uri)

    def publish(folder: str, uri: str) -> worker.Deferred:
        # the snapshot stays held until its follow-up is done, so a sync meanwhile leaves it alone
        held = contextlib.ExitStack()
        held.enter_context(tracking.delivering(Path(folder)))
        try:
            published = asdict(tracking.publish(Path(folder), uri))
        except BaseException:
            held.close()
            raise

        def finish() -> None:
            with held:
                tracking.finish_delivery(Path(folder), uri)

        return worker.Deferred(published, finish)

    return {"publish": publish}


if __name__ == "__main__":
    served_uri = os.environ[worker.URI_ENV]
    worker.serve(served_uri, lambda: jobs(served_uri))
