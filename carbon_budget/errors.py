"""The errors a user can cause. The library raises them; only the CLI and stages turn them into exit codes."""


class CarbonBudgetError(Exception):
    """Base class: the message is written for the person who has to fix it."""


class ParamsError(CarbonBudgetError):
    """params.yaml is missing, unreadable or holds a value that is not allowed."""


class RecordError(CarbonBudgetError):
    """An emission record is missing, unreadable, incomplete or does not belong to the current outputs."""


class MeasurementError(CarbonBudgetError):
    """codecarbon could not measure; a missing measurement is never reported as zero."""


class BudgetExceeded(CarbonBudgetError):
    """At least one budget was exceeded; the message lists every failing line."""


class StageAborted(CarbonBudgetError):
    """The stage stopped on purpose before finishing; its record says `aborted`, with the energy spent."""


class StageInterrupted(StageAborted):
    """The stage received SIGTERM or SIGINT; raised so the record of the energy spent so far is still written."""


class ForecastOverrun(StageAborted):
    """Training was stopped because its energy forecast exceeds what the budget leaves for it."""


class CommandFailed(CarbonBudgetError):
    """A command run under `carbon-budget track` exited non-zero; its record says `failed`."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"the tracked command exited with {exit_code}")
        self.exit_code = exit_code


class IntensityUnavailable(CarbonBudgetError):
    """A grid-intensity series cannot be had or used (a file in no known format, a provider down, slow or refusing
    the key, a series that does not cover the time asked). Callers fall back (start now, the country average) and
    say why with `reason`; it never fails a stage."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
